# GKD Table 2, tau = 1: the primary group is every class (eq. 3), Binary-KD
# vanishes and Primary-KD is KL(p^T || p^S). With lambda1 = 1 at the KD
# config's T this is exactly the KD baseline of Table 5
# (configs/kd/kd_r50_mbf.py; tests/test_configs/test_gkd_ablations.py).
_base_ = '../gkd_r50_mbf.py'
model = dict(distill_losses=dict(gkd=dict(tau=1.0, lambda1=1.0)))

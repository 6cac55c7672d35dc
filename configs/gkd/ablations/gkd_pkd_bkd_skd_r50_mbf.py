# GKD Table 1, P-KD + B-KD + S-KD: with the natural weights of eq. 9
# (lambda1 = p_Phi^T, lambda2 = 1, lambda3 = p_Psi^T) the three terms add up
# to KL(p^T || p^S), i.e. exactly the KD baseline (configs/kd/kd_r50_mbf.py:
# same T, same weight; tests/test_configs/test_gkd_ablations.py checks it).
_base_ = '../gkd_r50_mbf.py'
model = dict(distill_losses=dict(
    gkd=dict(lambda1='p_phi_t', lambda2=1.0, lambda3='p_psi_t')))

# GKD Table 2: tau = 1.0 (tau = 1 makes the primary group everything: KD).
_base_ = '../gkd_r50_mbf.py'
model = dict(distill_losses=dict(gkd=dict(tau=1.0)))

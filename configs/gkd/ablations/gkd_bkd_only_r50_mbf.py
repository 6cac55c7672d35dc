# GKD Table 1: Binary-KD only.
_base_ = '../gkd_r50_mbf.py'
model = dict(distill_losses=dict(gkd=dict(lambda1=0.0, lambda2=1.0)))

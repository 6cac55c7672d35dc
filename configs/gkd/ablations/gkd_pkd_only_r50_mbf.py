# GKD Table 1: Primary-KD only.
_base_ = '../gkd_r50_mbf.py'
model = dict(distill_losses=dict(gkd=dict(lambda2=0.0, lambda3=0.0)))

# GKD Table 3: lambda2 = 0.0 (lambda1 = 8).
_base_ = '../gkd_r50_mbf.py'
model = dict(distill_losses=dict(gkd=dict(lambda2=0.0)))

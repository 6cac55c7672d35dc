# GKD Table 3: lambda1 = 4.0 (lambda2 = 1).
_base_ = '../gkd_r50_mbf.py'
model = dict(distill_losses=dict(gkd=dict(lambda1=4.0)))

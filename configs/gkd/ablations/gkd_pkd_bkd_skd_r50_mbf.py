# GKD Table 1: P-KD + B-KD + S-KD (secondary group kept, weight 1).
_base_ = '../gkd_r50_mbf.py'
model = dict(distill_losses=dict(gkd=dict(lambda3=1.0)))

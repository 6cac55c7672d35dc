# GKD with an IResNet-18 student (GKD Table 5, last rows).
_base_ = './gkd_r50_mbf.py'
model = dict(
    student=dict(backbone=dict(_delete_=True, type='IResNet', depth=18,
                               num_features=512)))

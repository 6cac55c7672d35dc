# CAKD ablation "neither": no prompts, no URFM — the plain feature-MSE
# baseline (FitNet-style hint through a 1x1 conv) on the frozen Swin-T.
_base_ = './cakd_apt_only_swin_t_mbf.py'
model = dict(
    teacher=dict(backbone=dict(prompt_cfg=None)),
    teacher_trainable=[])

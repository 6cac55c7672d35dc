# CAKD ablation "URFM only": URFM + CAKDLoss on the plain (prompt-free,
# fully frozen) Swin-T teacher; the teacher URFM sees the 7*7 tokens only.
_base_ = '../cakd_swin_t_mbf.py'
model = dict(
    teacher=dict(backbone=dict(prompt_cfg=None)),
    teacher_trainable=[])

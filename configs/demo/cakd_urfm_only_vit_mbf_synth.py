# CAKD ablation on the synthetic set, "URFM only": URFM + CAKDLoss on the
# plain (prompt-free, fully frozen) demo ViT teacher; the teacher URFM sees
# the 8*8 spatial tokens only. configs/cakd/ablations/ has the MS1MV2 form.
_base_ = './cakd_vit_mbf_synth.py'
model = dict(
    teacher=dict(backbone=dict(prompt_cfg=None)),
    teacher_trainable=[])

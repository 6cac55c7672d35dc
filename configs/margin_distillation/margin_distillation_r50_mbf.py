# MarginDistillation (Svitov & Alyamkin, 2020) baseline: IR50 teacher ->
# MobileFaceNet student, GKD Table 5 setting. The student is trained with an
# ArcFace loss (s=64) over the teacher's frozen class centers whose margin is
# set per sample from the teacher: 0.2 + 0.3 x cos(teacher embedding, its
# class center) / batch max. As in the paper this loss replaces the student's
# own margin softmax (student_loss_weight=0).
# Class centers: the classifier of the teacher checkpoint (`head.weight`, what
# the authors use). For a teacher released without a classifier (insightface
# backbone.pth), build class prototypes first and point prototype_file at them:
#   python tools/misc/build_prototype_head.py \
#       configs/margin_distillation/margin_distillation_r50_mbf.py \
#       --checkpoint backbone.pth --revise-keys '^=backbone.' \
#       --out checkpoints/r50_prototype_head.pth
_base_ = [
    '../_base_/distillers/r50_mbf_ms1mv2.py',
    '../_base_/losses/margin_distillation.py'
]
model = dict(
    student_loss_weight=0.0,
    distill_losses=dict(
        margin_distillation=dict(_base_.margin_distillation_loss,
                                 gather=True)))

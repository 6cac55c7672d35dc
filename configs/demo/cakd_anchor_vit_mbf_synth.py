# CAKD on the synthetic set with the APT identity anchor (issue 15): the
# prompted teacher's embedding goes through the teacher's frozen ArcFace head
# (margin softmax, weight 1), logged as teacher.loss_cls_prompted, so the
# prompts stay a face recognizer. Everything else is cakd_vit_mbf_synth.py.
_base_ = './cakd_vit_mbf_synth.py'
model = dict(prompted_teacher_cls_weight=1.0)

# FaceDistiller skeleton: frozen IResNet-50 ArcFace teacher -> MobileFaceNet
# ArcFace student (GKD Table 5 setting). Leaf configs add `distill_losses`.
# The teacher is ../models/iresnet50.py, the network of
# configs/arcface/arcface_r50_ms1mv2.py whose checkpoint it loads (or an
# insightface backbone.pth with teacher_revise_keys=[(r'^', 'backbone.')] and
# a prototype head from tools/misc/build_prototype_head.py as
# teacher_head_ckpt). The student is mbf_student.py's (the network of
# ../models/mobilefacenet.py).
_base_ = ['../models/iresnet50.py', './mbf_student.py']
model = dict(_base_.mbf_distiller, _delete_=True, teacher=_base_.model,
             teacher_ckpt='checkpoints/arcface_r50_ms1mv2.pth')

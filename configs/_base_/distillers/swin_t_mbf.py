# FaceDistiller skeleton of CAKD: the Swin-T ArcFace teacher of
# configs/arcface/arcface_swin_t_ms1mv2.py (its network is ../models/swin_t.py,
# so the two cannot drift apart) -> MobileFaceNet ArcFace student. CAKD
# configs add prompts, recorders, connectors and `distill_losses`.
_base_ = ['../models/swin_t.py', './mbf_student.py']
model = dict(_base_.mbf_distiller, _delete_=True, teacher=_base_.model,
             teacher_ckpt='checkpoints/arcface_swin_t_ms1mv2.pth')

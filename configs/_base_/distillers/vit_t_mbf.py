# FaceDistiller skeleton of CAKD: the ViT-T ArcFace teacher of
# configs/arcface/arcface_vit_t_ms1mv2.py (its network is ../models/vit_t.py,
# so the two cannot drift apart) -> MobileFaceNet ArcFace student. CAKD
# configs add prompts, recorders, connectors and `distill_losses`.
_base_ = ['../models/vit_t.py', './mbf_student.py']
model = dict(_base_.mbf_distiller, _delete_=True, teacher=_base_.model,
             teacher_ckpt='checkpoints/arcface_vit_t_ms1mv2.pth')

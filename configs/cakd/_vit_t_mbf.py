# CAKD distiller skeleton: the ViT-T ArcFace teacher of
# configs/arcface/arcface_vit_t_ms1mv2.py (its architecture is taken from
# ../_base_/models/vit_t.py, so the two cannot drift apart) -> MobileFaceNet
# ArcFace student, MS1MV2 data and the GKD student schedule (CAKD's own
# schedule is not public). Leaf configs add prompts, recorders, connectors
# and `distill_losses`.
_base_ = [
    '../_base_/models/vit_t.py', '../_base_/datasets/ms1mv2.py',
    '../_base_/datasets/verification.py', '../_base_/schedules/sgd_26e.py',
    '../_base_/default_runtime.py'
]
model = dict(
    _delete_=True,
    type='FaceDistiller',
    data_preprocessor=dict(type='FaceDataPreprocessor', mean=127.5, std=128.0),
    student=dict(
        type='FaceRecognizer',
        backbone=dict(type='MobileFaceNet', num_features=512,
                      blocks=(1, 4, 6, 2), scale=2),
        head=dict(type='ArcFaceHead', num_classes=85742, in_channels=512,
                  s=64.0, m=0.5)),
    teacher={{_base_.model}},
    teacher_ckpt='checkpoints/arcface_vit_t_ms1mv2.pth',
    distill_losses=dict())

# FaceDistiller skeleton of CAKD: the Swin-T ArcFace teacher of
# configs/arcface/arcface_swin_t_ms1mv2.py (its network is ../models/swin_t.py,
# so the two cannot drift apart) -> MobileFaceNet ArcFace student. CAKD
# configs add prompts, recorders, connectors and `distill_losses`.
_base_ = '../models/swin_t.py'
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
    teacher_ckpt='checkpoints/arcface_swin_t_ms1mv2.pth',
    distill_losses=dict())

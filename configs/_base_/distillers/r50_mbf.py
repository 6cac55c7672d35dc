# FaceDistiller skeleton: frozen IResNet-50 ArcFace teacher -> MobileFaceNet
# ArcFace student (GKD Table 5 setting). Leaf configs add `distill_losses`.
# The teacher is ../models/iresnet50.py, the network of
# configs/arcface/arcface_r50_ms1mv2.py whose checkpoint it loads (or an
# insightface backbone.pth with teacher_revise_keys=[(r'^', 'backbone.')] and
# a prototype head from tools/misc/build_prototype_head.py as
# teacher_head_ckpt). The student is ../models/mobilefacenet.py's network.
_base_ = '../models/iresnet50.py'
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
    teacher_ckpt='checkpoints/arcface_r50_ms1mv2.pth',
    distill_losses=dict())

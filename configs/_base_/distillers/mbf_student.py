# What the MS1MV2 FaceDistiller skeletons (r50_mbf.py, swin_t_mbf.py,
# vit_t_mbf.py) share: the distiller with the MobileFaceNet ArcFace student
# (the network of ../models/mobilefacenet.py, s=64, m=0.5) and no loss yet.
# A skeleton adds its teacher:
#   model = dict(_base_.mbf_distiller, _delete_=True,
#                teacher=_base_.model, teacher_ckpt='checkpoints/...')
mbf_distiller = dict(
    type='FaceDistiller',
    data_preprocessor=dict(type='FaceDataPreprocessor', mean=127.5, std=128.0),
    student=dict(
        type='FaceRecognizer',
        backbone=dict(type='MobileFaceNet', num_features=512,
                      blocks=(1, 4, 6, 2), scale=2),
        head=dict(type='ArcFaceHead', num_classes=85742, in_channels=512,
                  s=64.0, m=0.5)),
    distill_losses=dict())

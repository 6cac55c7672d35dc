# MobileFaceNet (insightface `mbf`) + ArcFace (s=64, m=0.5).
model = dict(
    type='FaceRecognizer',
    data_preprocessor=dict(type='FaceDataPreprocessor', mean=127.5, std=128.0),
    backbone=dict(type='MobileFaceNet', num_features=512, blocks=(1, 4, 6, 2),
                  scale=2, fp16=False),
    head=dict(type='ArcFaceHead', num_classes=85742, in_channels=512, s=64.0,
              m=0.5),
    test_cfg=dict(flip=True))

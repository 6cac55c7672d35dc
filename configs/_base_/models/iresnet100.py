# IResNet-100 + ArcFace (s=64, m=0.5), insightface-compatible backbone.
model = dict(
    type='FaceRecognizer',
    data_preprocessor=dict(type='FaceDataPreprocessor', mean=127.5, std=128.0),
    backbone=dict(type='IResNet', depth=100, num_features=512, dropout=0.0,
                  fp16=False),
    head=dict(type='ArcFaceHead', num_classes=85742, in_channels=512, s=64.0,
              m=0.5),
    test_cfg=dict(flip=True))

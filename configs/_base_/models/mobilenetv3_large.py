# mmpretrain's MobileNetV3-large as a face backbone: its last feature map
# (960 channels, 4x4 at 112x112) goes through a GDC embedding neck.
model = dict(
    type='FaceRecognizer',
    data_preprocessor=dict(type='FaceDataPreprocessor', mean=127.5, std=128.0),
    backbone=dict(type='mmpretrain.MobileNetV3', arch='large'),
    neck=dict(type='EmbeddingNeck', in_channels=960, num_features=512,
              pooling='gdc', feat_size=4),
    head=dict(type='ArcFaceHead', num_classes=85742, in_channels=512, s=64.0,
              m=0.5),
    test_cfg=dict(flip=True))

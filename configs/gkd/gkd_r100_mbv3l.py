# GKD Table 7 setting: IResNet-100 teacher -> mmpretrain MobileNetV3-large
# student, CosFace (s=64, m=0.4) for both (masked MS1M in the paper).
_base_ = './gkd_r50_mbf.py'
model = dict(
    student=dict(
        backbone=dict(_delete_=True, type='mmpretrain.MobileNetV3',
                      arch='large'),
        neck=dict(type='EmbeddingNeck', in_channels=960, num_features=512,
                  pooling='gdc', feat_size=4),
        head=dict(_delete_=True, type='CosFaceHead', num_classes=85742,
                  in_channels=512, s=64.0, m=0.4)),
    teacher=dict(
        backbone=dict(depth=100),
        head=dict(_delete_=True, type='CosFaceHead', num_classes=85742,
                  in_channels=512, s=64.0, m=0.4)),
    teacher_ckpt='checkpoints/cosface_r100_ms1mv2.pth')

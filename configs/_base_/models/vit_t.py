# insightface arcface_torch's ViT-T (patch 9 at 112x112 -> 12x12 = 144
# tokens, embed 256, depth 12, 8 heads, 10% token masking in training) +
# ArcFace. Released insightface ViT weights load strictly into `backbone`.
# For CAKD's APT add prompts without touching the pretrained keys:
#   teacher=dict(backbone=dict(prompt_cfg=dict(num_prompts=4, groups=4)))
model = dict(
    type='FaceRecognizer',
    data_preprocessor=dict(type='FaceDataPreprocessor', mean=127.5, std=128.0),
    backbone=dict(type='FaceViT', arch='vit_t', img_size=112, patch_size=9,
                  num_features=512),
    head=dict(type='ArcFaceHead', num_classes=85742, in_channels=512, s=64.0,
              m=0.5),
    test_cfg=dict(flip=True))

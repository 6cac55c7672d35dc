# Swin-T (mmpretrain) as a 112x112 face backbone + GDC embedding neck +
# ArcFace.
#
# Geometry: patch_size=2 at 112x112 gives the 56 -> 28 -> 14 -> 7 token
# grids of ImageNet Swin-T at 224 (patch 4), so window_size=7 divides every
# stage: no padding anywhere, the last stage is one 7x7 window (no shift
# there, as in the original), and the 13x13 relative-position tables have
# ImageNet's shape. The final map is (B, 768, 7, 7): the 7x7 grid of
# IResNet/MobileFaceNet and of CAKD's 7x7 URFM centers. ~4.5 GFLOPs/image.
# (The alternative patch_size=4 gives 28 -> 14 -> 7 -> 4 and needs
# pad_small_map=True: the 4x4 last stage is padded to a 7x7 window whose 33
# zero tokens take part in attention unmasked, and a 4x4 grid is coarse.)
#
# mmpretrain's SwinTransformer has no gap_before_final_norm; its output is a
# tuple with one LayerNorm-ed (B, C, H, W) map per out_indices entry (norm3
# for stage 3). out_after_downsample=False: stage i's map is taken before its
# patch merging (the last stage has none anyway).
#
# For CAKD's APT the teacher backbone becomes PromptedSwinTransformer (same
# arguments and state-dict keys, plus prompts.*), e.g.
#   teacher=dict(backbone=dict(type='PromptedSwinTransformer',
#                              prompt_cfg=dict(num_prompts=4)))
model = dict(
    type='FaceRecognizer',
    data_preprocessor=dict(type='FaceDataPreprocessor', mean=127.5, std=128.0),
    backbone=dict(
        type='mmpretrain.SwinTransformer',
        arch='tiny',  # embed 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24)
        img_size=112,
        patch_size=2,
        window_size=7,
        drop_path_rate=0.1,
        out_indices=(3, ),
        out_after_downsample=False,
        pad_small_map=False),
    # GDC (depthwise 7x7 over the map) keeps per-position weights at 0.4M
    # params; pooling='flatten' (IResNet's output block) would cost 19.3M.
    neck=dict(type='EmbeddingNeck', in_channels=768, num_features=512,
              pooling='gdc', feat_size=7),
    head=dict(type='ArcFaceHead', num_classes=85742, in_channels=512, s=64.0,
              m=0.5),
    test_cfg=dict(flip=True))

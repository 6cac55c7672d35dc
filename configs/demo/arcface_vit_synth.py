# Demo Transformer teacher (CAKD demo): a tiny FaceViT + ArcFace on the
# synthetic set at 64x64 (patch 8 -> 8x8 tokens, width 64, depth 4, 4 heads),
# sized for 2 CPU cores. `make demo` trains it and copies the final
# checkpoint to checkpoints/demo/arcface_vit_synth.pth.
# AdamW as insightface's ViT recipes (lr 1e-3 at batch 64 here, wd 0.1), no
# token masking (too few tokens and epochs for that regularizer to pay off).
_base_ = [
    '../_base_/models/vit_t.py', '../_base_/datasets/synthetic.py',
    '../_base_/schedules/cpu_demo_6e.py', '../_base_/default_runtime.py'
]
model = dict(
    data_preprocessor=dict(resize_to=64),
    backbone=dict(_delete_=True, type='FaceViT', img_size=64, patch_size=8,
                  embed_dim=64, depth=4, num_heads=4, num_features=128,
                  drop_path_rate=0.0, mask_ratio=0.0),
    head=dict(num_classes=300, in_channels=128, s=32.0, m=0.3))
default_hooks = dict(logger=dict(interval=20))
# AdamW instead of cpu_demo.py's SGD, cosine to 1e-5 over
# cpu_demo_6e.py's 6 epochs
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.1))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1,
         end={{_base_.max_epochs}}, eta_min=1e-5, convert_to_iter_based=True),
]

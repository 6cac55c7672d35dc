# The optimizer of insightface's ViT recipes (arcface_torch configs/*_vit_t*:
# AdamW lr 1e-3, weight decay 0.1, warm-up for a tenth of the epochs, then
# polynomial decay with power 2 to 0); 40 epochs, 8 GPUs x 128 = 1024 images
# per step (--auto-scale-lr rescales the lr linearly from that base).
max_epochs = 40
warmup_epochs = max_epochs // 10
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='TrainableParamsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='PolyLR', power=2.0, eta_min=0.0, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024, enable=False)

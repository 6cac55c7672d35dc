# The schedule of the GKD authors' public training script (WisonZ/GKD, built
# on insightface's arcface_torch): 20 epochs, SGD lr 0.1 (momentum 0.9, wd
# 5e-4), linear warm-up, then cosine decay per iteration. The warm-up length
# is not in our notes (docs/papers.md); one epoch is our assumption, as in
# sgd_26e.py. The paper itself states ÷10 at epochs 10/18/24 (sgd_26e.py).
_base_ = './sgd.py'
max_epochs = 20
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=0.0, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
# lr 0.1 is for 8 GPUs x 128; `--auto-scale-lr` rescales it for other sizes.
auto_scale_lr = dict(base_batch_size=1024, enable=False)

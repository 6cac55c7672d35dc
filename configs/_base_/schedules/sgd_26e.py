# The GKD paper's schedule: SGD lr 0.1, momentum 0.9, weight decay 5e-4,
# lr ÷10 at epochs 10, 18 and 24, 128 images per GPU on 8 GPUs. The paper does
# not state the last epoch; we stop at 26 (two epochs after the last step, as
# in EKD's 10/18/22 → 26).
_base_ = './sgd.py'
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='MultiStepLR', by_epoch=True, milestones=[10, 18, 24],
         gamma=0.1),
]
train_cfg = dict(by_epoch=True, max_epochs=26, val_interval=1)
# lr 0.1 is for 8 GPUs x 128; `--auto-scale-lr` rescales it for other sizes.
auto_scale_lr = dict(base_batch_size=1024, enable=False)

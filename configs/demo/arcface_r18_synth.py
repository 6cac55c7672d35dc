# Demo teacher: a narrow IResNet-18 (base width 16) + ArcFace on the synthetic
# set, sized for 2 CPU cores. `make demo` trains it.
_base_ = [
    '../_base_/models/iresnet18.py', '../_base_/datasets/synthetic.py',
    '../_base_/schedules/cpu_demo.py', '../_base_/default_runtime.py'
]
model = dict(
    data_preprocessor=dict(resize_to=64),  # CPU demo: train/test at 64x64
    backbone=dict(input_size=64, base_channels=16, num_features=128),
    head=dict(num_classes=300, in_channels=128, s=32.0, m=0.3))
default_hooks = dict(logger=dict(interval=20))
# the teacher trains longer than the students (6 vs 4 epochs)
max_epochs = 6
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=1e-3, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)

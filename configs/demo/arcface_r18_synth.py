# Demo teacher: a narrow IResNet-18 (base width 16) + ArcFace on the synthetic
# set, sized for 2 CPU cores, trained for 6 epochs (cpu_demo_6e.py).
# `make demo` trains it.
_base_ = [
    '../_base_/models/iresnet18.py', '../_base_/datasets/synthetic.py',
    '../_base_/schedules/cpu_demo_6e.py', '../_base_/default_runtime.py'
]
model = dict(
    # CPU demo: train/test at 64x64, NHWC convolutions (1.6x faster on CPU)
    data_preprocessor=dict(resize_to=64, channels_last=True),
    backbone=dict(input_size=64, base_channels=16, num_features=128),
    head=dict(num_classes=300, in_channels=128, s=32.0, m=0.3))
default_hooks = dict(logger=dict(interval=20))

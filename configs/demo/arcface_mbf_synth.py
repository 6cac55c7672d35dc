# Demo student baseline: a slim MobileFaceNet + ArcFace on the synthetic set.
_base_ = [
    '../_base_/models/mobilefacenet.py', '../_base_/datasets/synthetic.py',
    '../_base_/schedules/cpu_demo.py', '../_base_/default_runtime.py'
]
model = dict(
    # CPU demo: train/test at 64x64, NHWC convolutions (1.6x faster on CPU)
    data_preprocessor=dict(resize_to=64, channels_last=True),
    backbone=dict(input_size=64, num_features=128, blocks=(1, 2, 2, 1),
                  scale=1, expansion=(32, 64, 128), conv_sep_channels=128),
    head=dict(num_classes=300, in_channels=128, s=32.0, m=0.3))
default_hooks = dict(logger=dict(interval=20))

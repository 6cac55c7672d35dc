# Demo distillation skeleton on the synthetic set: the demo teacher
# (arcface_r18_synth.py; `make demo` copies its final checkpoint to
# checkpoints/demo/arcface_r18_synth.pth) -> the demo student architecture
# (arcface_mbf_synth.py), same data, schedule and budget as the student
# baseline. Leaf configs add `distill_losses`.
_base_ = [
    '../_base_/datasets/synthetic.py', '../_base_/schedules/cpu_demo.py',
    '../_base_/default_runtime.py'
]
model = dict(
    type='FaceDistiller',
    data_preprocessor=dict(type='FaceDataPreprocessor', mean=127.5, std=128.0,
                           resize_to=64, channels_last=True),
    student=dict(
        type='FaceRecognizer',
        backbone=dict(type='MobileFaceNet', input_size=64, num_features=128,
                      blocks=(1, 2, 2, 1), scale=1, expansion=(32, 64, 128),
                      conv_sep_channels=128),
        head=dict(type='ArcFaceHead', num_classes=300, in_channels=128,
                  s=32.0, m=0.3)),
    teacher=dict(
        type='FaceRecognizer',
        backbone=dict(type='IResNet', depth=18, base_channels=16,
                      input_size=64, num_features=128),
        head=dict(type='ArcFaceHead', num_classes=300, in_channels=128,
                  s=32.0, m=0.3)),
    teacher_ckpt='checkpoints/demo/arcface_r18_synth.pth',
    distill_losses=dict())
default_hooks = dict(logger=dict(interval=20))

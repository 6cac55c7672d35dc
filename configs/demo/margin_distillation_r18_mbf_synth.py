# MarginDistillation on the synthetic set (CPU), same budget as the other demo
# methods: ArcFace over the demo teacher's class centers (the classifier of
# its checkpoint, which every distillation demo loads as teacher_ckpt) with the
# per-sample margin 0.2..0.5 set by the teacher, s = 32 as the demo heads; as
# in the paper it replaces the student's own margin softmax.
# Without that checkpoint's classifier, either build prototypes
#   python tools/misc/build_prototype_head.py \
#       configs/demo/margin_distillation_r18_mbf_synth.py \
#       --out checkpoints/demo/r18_prototype_head.pth
# and set prototype_file to it, or set prototype_file=None to accumulate the
# centers from the teacher embeddings during training (running buffers).
_base_ = [
    './_distill_r18_mbf_synth.py', '../_base_/losses/margin_distillation.py'
]
model = dict(
    student_loss_weight=0.0,
    distill_losses=dict(
        margin_distillation=dict(
            _base_.margin_distillation_loss,
            prototype_file='checkpoints/demo/arcface_r18_synth.pth',
            num_classes=300, embed_dim=128, scale=32.0)))

# GKD as in the authors' public code (WisonZ/GKD): CosFace margin logits,
# T=4 (x T^2), fixed k=10000, target forced into the primary group, KD
# ramped in over 10 epochs, and the authors' schedule: 20 epochs, linear
# warm-up + cosine decay (../_base_/schedules/sgd_20e_cosine.py), not the
# paper's ÷10 at 10/18/24. Compare with the paper setting gkd_r50_mbf.py.
#   tools/dist_train.sh configs/gkd/gkd_r50_mbf_authors.py 8
_base_ = [
    '../_base_/distillers/r50_mbf.py', '../_base_/datasets/ms1mv2.py',
    '../_base_/datasets/verification.py',
    '../_base_/schedules/sgd_20e_cosine.py', '../_base_/default_runtime.py',
    '../_base_/losses/gkd.py'
]
cosface = dict(_delete_=True, type='CosFaceHead', num_classes=85742,
               in_channels=512, s=64.0, m=0.4)
model = dict(
    student=dict(head=cosface),
    teacher=dict(head=cosface),
    distill_losses=dict(
        gkd=dict(_base_.gkd_loss, k_mode='fixed', fixed_k=10000,
                 force_target=True,
                 inputs=dict(student_logits='student.margin_logits',
                             teacher_logits='teacher.margin_logits',
                             gt_label='gt_label'))))
custom_hooks = [dict(type='DistillWarmupHook', warmup_epochs=10)]

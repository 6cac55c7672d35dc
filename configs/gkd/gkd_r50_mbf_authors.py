# GKD as in the authors' public code (WisonZ/GKD): CosFace margin logits,
# T=4 (x T^2), fixed k=10000, target forced into the primary group, KD
# ramped in over 10 epochs. Compare with the paper-default gkd_r50_mbf.py.
_base_ = './gkd_r50_mbf.py'
model = dict(
    student=dict(head=dict(_delete_=True, type='CosFaceHead',
                           num_classes=85742, in_channels=512, s=64.0, m=0.4)),
    teacher=dict(head=dict(_delete_=True, type='CosFaceHead',
                           num_classes=85742, in_channels=512, s=64.0, m=0.4)),
    distill_losses=dict(
        gkd=dict(temperature=4.0, k_mode='fixed', fixed_k=10000,
                 force_target=True,
                 inputs=dict(student_logits='student.margin_logits',
                             teacher_logits='teacher.margin_logits'))))
custom_hooks = [dict(type='DistillWarmupHook', warmup_epochs=10)]

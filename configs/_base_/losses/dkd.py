# Decoupled KD (CVPR 2022): alpha=1 (target-class KD), beta=8 (non-target
# KD), T=4; configs/dkd/dkd_r50_mbf.py and configs/demo/dkd_r18_mbf_synth.py.
dkd_loss = dict(type='DKDLoss', alpha=1.0, beta=8.0, temperature=4.0,
                inputs=dict(student_logits='student.logits',
                            teacher_logits='teacher.logits',
                            gt_label='gt_label'))
# The DKD authors' warm-up: the DKD term times min(epoch / 20, 1), epochs
# counted from 1 (their CIFAR-100 setting; their ImageNet one is 1 epoch,
# i.e. no ramp). The project's DistillWarmupHook ramps every distillation
# term, which is the DKD term alone in the DKD configs; per iteration
# instead: dict(dkd_warmup, by_epoch=False, warmup_epochs=<iterations>).
#   custom_hooks = [_base_.dkd_warmup]   (configs/dkd/dkd_warmup_r50_mbf.py)
dkd_warmup = dict(type='DistillWarmupHook', warmup_epochs=20, by_epoch=True,
                  count_from=1)

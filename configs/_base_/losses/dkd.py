# Decoupled KD (CVPR 2022): alpha=1 (target-class KD), beta=8 (non-target
# KD), T=4; configs/dkd/dkd_r50_mbf.py and configs/demo/dkd_r18_mbf_synth.py.
dkd_loss = dict(type='DKDLoss', alpha=1.0, beta=8.0, temperature=4.0,
                inputs=dict(student_logits='student.logits',
                            teacher_logits='teacher.logits',
                            gt_label='gt_label'))

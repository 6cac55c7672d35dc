# Decoupled KD (CVPR 2022) on the synthetic set (CPU), same budget as the
# KD/GKD demos: alpha=1 (target-class KD), beta=8 (non-target KD), T=4.
_base_ = './_distill_r18_mbf_synth.py'
model = dict(
    distill_losses=dict(
        dkd=dict(type='DKDLoss', alpha=1.0, beta=8.0, temperature=4.0,
                 inputs=dict(student_logits='student.logits',
                             teacher_logits='teacher.logits',
                             gt_label='gt_label'))))

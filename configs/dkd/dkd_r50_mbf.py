# Decoupled KD (CVPR 2022) baseline: IR50 teacher -> MobileFaceNet student.
_base_ = '../_base_/distillers/r50_mbf_ms1mv2.py'
model = dict(
    distill_losses=dict(
        dkd=dict(type='DKDLoss', alpha=1.0, beta=8.0, temperature=4.0,
                 inputs=dict(student_logits='student.logits',
                             teacher_logits='teacher.logits',
                             gt_label='gt_label'))))

# Hinton KD baseline (T=4, x T^2): IR50 teacher -> MobileFaceNet student.
_base_ = '../_base_/distillers/r50_mbf_ms1mv2.py'
model = dict(
    distill_losses=dict(
        kd=dict(type='KDLoss', temperature=4.0, loss_weight=1.0,
                inputs=dict(student_logits='student.logits',
                            teacher_logits='teacher.logits'))))

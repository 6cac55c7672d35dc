# Hinton KD on the synthetic set (CPU), same budget as the GKD demo.
_base_ = './_distill_r18_mbf_synth.py'
model = dict(
    distill_losses=dict(
        kd=dict(type='KDLoss', temperature=4.0,
                inputs=dict(student_logits='student.logits',
                            teacher_logits='teacher.logits'))))

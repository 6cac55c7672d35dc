# CCKD (Peng et al., ICCV 2019): correlation congruence under the Taylor-RBF
# kernel (gamma 0.4, order 2), weight 1 (configs/cckd/cckd_r50_mbf.py; the
# demo reweights) — the face baselines' CC term alone.
cckd_loss = dict(type='CCKDLoss', gamma=0.4, order=2, loss_weight=1.0,
                 inputs=dict(student_embedding='student.embedding',
                             teacher_embedding='teacher.embedding'))
# The paper's full form: + the instance-level KD term (Hinton KD, T = 4, on
# the logits) with weight kd_weight (the paper's 1 - alpha; alpha is the
# distiller's student_loss_weight, beta this loss_weight); the weights are
# this project's (configs/cckd/cckd_kd_r50_mbf.py), not the paper's.
cckd_kd_loss = dict(
    cckd_loss, kd_weight=1.0, temperature=4.0,
    inputs=dict(cckd_loss['inputs'], student_logits='student.logits',
                teacher_logits='teacher.logits'))

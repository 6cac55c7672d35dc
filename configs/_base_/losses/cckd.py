# CCKD (Peng et al., ICCV 2019): correlation congruence under the Taylor-RBF
# kernel (gamma 0.4, order 2), weight 1 (configs/cckd/cckd_r50_mbf.py; the
# demo reweights).
cckd_loss = dict(type='CCKDLoss', gamma=0.4, order=2, loss_weight=1.0,
                 inputs=dict(student_embedding='student.embedding',
                             teacher_embedding='teacher.embedding'))

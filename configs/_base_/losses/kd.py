# Hinton KD (T=4, x T^2) on the logits, as every KD config here uses it
# (configs/kd/kd_r50_mbf.py, configs/demo/kd_r18_mbf_synth.py):
#   model = dict(distill_losses=dict(kd={{_base_.kd_loss}}))
kd_loss = dict(type='KDLoss', temperature=4.0,
               inputs=dict(student_logits='student.logits',
                           teacher_logits='teacher.logits'))

# FitNet with the embedding as hint, weight 1 (the face baselines' usage,
# configs/fitnet/fitnet_r50_mbf.py; the demo reweights).
fitnet_loss = dict(type='FitNetLoss', loss_weight=1.0,
                   inputs=dict(student_feat='student.embedding',
                               teacher_feat='teacher.embedding'))

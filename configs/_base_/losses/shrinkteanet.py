# ShrinkTeaNet angular distillation, 1 - cos(f_s, f_t) of the embeddings,
# weight 1 (configs/shrinkteanet/shrinkteanet_r50_mbf.py; the demo reweights).
shrinkteanet_loss = dict(type='ShrinkTeaNetLoss', loss_weight=1.0,
                         inputs=dict(student_feat='student.embedding',
                                     teacher_feat='teacher.embedding'))

# DarkRank (Chen et al., AAAI 2018): ListMLE transfer of the teacher's 3
# nearest neighbours (alpha 3, beta 3), weight 1
# (configs/darkrank/darkrank_r50_mbf.py,
# configs/demo/darkrank_r18_mbf_synth.py).
darkrank_loss = dict(type='DarkRankLoss', alpha=3.0, beta=3.0, list_length=3,
                     loss_weight=1.0,
                     inputs=dict(student_embedding='student.embedding',
                                 teacher_embedding='teacher.embedding'))

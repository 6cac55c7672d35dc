# RKD (Park et al., CVPR 2019): distance (weight 25) + angle (weight 50)
# smooth-L1 terms, weight 1 (configs/rkd/rkd_r50_mbf.py,
# configs/demo/rkd_r18_mbf_synth.py).
rkd_loss = dict(type='RKDLoss', distance_weight=25.0, angle_weight=50.0,
                loss_weight=1.0,
                inputs=dict(student_embedding='student.embedding',
                            teacher_embedding='teacher.embedding'))

# Triplet distillation (Feng et al., 2019) with the teacher-adaptive margin
# 0.2..0.5, weight 1 (configs/triplet/triplet_r50_mbf.py; the demo reweights).
# Needs identity-balanced batches (../samplers/pk_sampler.py).
triplet_loss = dict(type='TripletDistillationLoss', m_min=0.2, m_max=0.5,
                    loss_weight=1.0,
                    inputs=dict(student_embedding='student.embedding',
                                teacher_embedding='teacher.embedding',
                                gt_label='gt_label'))

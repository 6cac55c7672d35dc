# EKD (Huang et al., CVPR 2022) on the embeddings, weight 1; the MS1MV2 config
# (configs/ekd/ekd_r50_mbf.py) sets the paper's FPR levels and weights.
# Needs identity-balanced batches (../samplers/pk_sampler.py).
ekd_loss = dict(type='EKDLoss', loss_weight=1.0,
                inputs=dict(student_embedding='student.embedding',
                            teacher_embedding='teacher.embedding',
                            gt_label='gt_label'))

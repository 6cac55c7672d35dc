# Hinton KD (T=4, x T^2, weight 1) on the *margin* logits of both networks,
# the inputs of the GKD headline (configs/_base_/losses/gkd.py). It is the
# loss GKD Table 1's P-KD+B-KD+S-KD row and Table 2's tau=1 row reduce to
# (tests/test_configs/test_gkd_ablations.py); kd_r50_mbf.py is KD on s*cos.
_base_ = '../kd_r50_mbf.py'
model = dict(distill_losses=dict(kd=dict(
    inputs=dict(student_logits='student.margin_logits',
                teacher_logits='teacher.margin_logits'))))

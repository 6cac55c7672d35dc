# CCKD with the paper's instance-level KD term (Peng et al., ICCV 2019):
# L = alpha CE + lambda_KD KD + beta CC, here the ArcFace loss (alpha =
# student_loss_weight = 1) + Hinton KD on the s cos logits (T = 4, x T^2,
# lambda_KD = kd_weight = 1) + the correlation congruence of
# cckd_r50_mbf.py (beta = loss_weight = 1). The paper's experiment weights
# are not available here; these are the weights of this project's KD and
# CCKD baselines.
_base_ = ['../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/cckd.py']
model = dict(distill_losses=dict(cckd=dict(_base_.cckd_kd_loss, gather=True)))

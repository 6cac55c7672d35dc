# ShrinkTeaNet (Duong et al., 2019) angular distillation baseline: IR50
# teacher -> MobileFaceNet student, GKD Table 5 setting. 1 - cos(f_s, f_t)
# between the embeddings, averaged over the batch, weight 1 (as in the
# MarginDistillation authors' "angular distillation" and the EKD authors'
# baselines).
_base_ = [
    '../_base_/distillers/r50_mbf_ms1mv2.py',
    '../_base_/losses/shrinkteanet.py'
]
model = dict(distill_losses=dict(shrinkteanet={{_base_.shrinkteanet_loss}}))

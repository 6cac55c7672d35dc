# CCKD (Peng et al., ICCV 2019) baseline: IR50 teacher -> MobileFaceNet
# student, GKD Table 5 setting. MSE between the correlation matrices of the
# L2-normalized embeddings under the Gaussian RBF kernel by Taylor expansion
# (gamma = 0.4, order 2), on the batch gathered over all GPUs; weight 1 as in
# the face-recognition baselines of the EKD authors.
_base_ = ['../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/cckd.py']
model = dict(distill_losses=dict(cckd=dict(_base_.cckd_loss, gather=True)))

# CCKD on the synthetic set (CPU), same budget as the other demo methods:
# Taylor-RBF (gamma 0.4, order 2) correlation matrices of the normalized
# 128-d embeddings of the gathered batch. Demo weight 500: the CCKD gradient
# on the student backbone is then ~0.4x the ArcFace gradient at the start of
# training (the face baselines' weight 1 gives ~0.001x, i.e. no effect;
# measured on one synthetic batch with the demo teacher).
_base_ = ['./_distill_r18_mbf_synth.py', '../_base_/losses/cckd.py']
model = dict(distill_losses=dict(
    cckd=dict(_base_.cckd_loss, loss_weight=500.0)))

# FitNet on the synthetic set (CPU), same budget as the other demo methods:
# MSE (element mean) between the raw 128-d student and teacher embeddings.
# Demo weight 10: at the start of training the FitNet gradient on the student
# backbone is then ~0.6x the ArcFace gradient (weight 1, the face baselines'
# value, gives ~0.06x; measured on one synthetic batch with the demo teacher).
_base_ = ['./_distill_r18_mbf_synth.py', '../_base_/losses/fitnet.py']
model = dict(distill_losses=dict(
    fitnet=dict(_base_.fitnet_loss, loss_weight=10.0)))

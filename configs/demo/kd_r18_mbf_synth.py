# Hinton KD on the synthetic set (CPU), same budget as the GKD demo.
_base_ = ['./_distill_r18_mbf_synth.py', '../_base_/losses/kd.py']
model = dict(distill_losses=dict(kd={{_base_.kd_loss}}))

# Decoupled KD (CVPR 2022) on the synthetic set (CPU), same budget as the
# KD/GKD demos: alpha=1 (target-class KD), beta=8 (non-target KD), T=4.
_base_ = ['./_distill_r18_mbf_synth.py', '../_base_/losses/dkd.py']
model = dict(distill_losses=dict(dkd={{_base_.dkd_loss}}))

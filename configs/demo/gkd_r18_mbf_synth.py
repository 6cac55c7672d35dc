# GKD on the synthetic set (CPU), the loss of configs/gkd/gkd_r50_mbf.py:
#   tools/dist_train.sh configs/demo/gkd_r18_mbf_synth.py 2
# Measured regime (logged distill.gkd.k_mean, docs/results.md): mean k about
# 135 of the 300 classes at T = 4 on margin logits (about 115 on s*cos,
# gkd_cos_r18_mbf_synth.py); at T = 1 on s*cos it collapses.
_base_ = ['./_distill_r18_mbf_synth.py', '../_base_/losses/gkd.py']
model = dict(distill_losses=dict(gkd={{_base_.gkd_loss}}))

# GKD on the synthetic set (CPU), the loss of configs/gkd/gkd_r50_mbf.py:
#   tools/dist_train.sh configs/demo/gkd_r18_mbf_synth.py 2
# Measured regime (tools/analysis/gkd_regime.py, docs/results.md): mean k
# about 120 of the 300 classes at T = 4; at T = 1 it collapses.
_base_ = ['./_distill_r18_mbf_synth.py', '../_base_/losses/gkd.py']
model = dict(distill_losses=dict(gkd={{_base_.gkd_loss}}))

# ShrinkTeaNet angular distillation on the synthetic set (CPU), same budget as
# the other demo methods: 1 - cos between the 128-d embeddings. Demo weight
# 10: its gradient on the student backbone is then ~0.3x the ArcFace gradient
# at the start of training (weight 1 gives ~0.03x; measured on one synthetic
# batch with the demo teacher).
_base_ = ['./_distill_r18_mbf_synth.py', '../_base_/losses/shrinkteanet.py']
model = dict(distill_losses=dict(
    shrinkteanet=dict(_base_.shrinkteanet_loss, loss_weight=10.0)))

# Triplet distillation on the synthetic set (CPU): identity-balanced batches of
# 32 random images + 8 identities x 4 images (the synthetic set has 15-25
# images per identity, 300 identities), `epoch_length='dataset'` keeps the
# other demo methods' 94 batches of 64 per epoch. ArcFace on the whole batch +
# 5 x the triplet loss with the teacher-adaptive margin 0.2..0.5. Demo weight
# 5: its gradient on the student backbone is then ~0.5x the ArcFace gradient at
# the start of training (weight 1 gives ~0.1x; measured on one synthetic batch
# with the demo teacher).
_base_ = [
    './_distill_r18_mbf_synth.py', '../_base_/losses/triplet.py',
    '../_base_/samplers/pk_sampler.py'
]
model = dict(
    distill_losses=dict(triplet=dict(_base_.triplet_loss, loss_weight=5.0)))
train_dataloader = {{_base_.pk_train_dataloader}}

# EKD on the synthetic set (CPU): the demo teacher -> the demo student, with
# identity-balanced batches of 32 random images + 8 identities x 4 images
# (the synthetic set has 15-25 images per identity, 300 identities).
# Same model, schedule and images per epoch as the other demo methods:
# `epoch_length='dataset'` keeps 6065 // 64 = 94 batches of 64 per epoch (the
# paper's definition, 'random_part', would double the epoch). The demo student
# head (ArcFace s=32, m=0.3, shared by all demo methods) is kept.
_base_ = [
    './_distill_r18_mbf_synth.py', '../_base_/losses/ekd.py',
    '../_base_/samplers/pk_sampler.py'
]
model = dict(distill_losses=dict(ekd={{_base_.ekd_loss}}))
# classification loss on the random part (32 samples) only: the sampler
# flags each sample (with_cls_loss)
train_dataloader = dict(
    _base_.pk_train_dataloader,
    sampler=dict(_base_.pk_sampler, cls_loss_on='random_part'))

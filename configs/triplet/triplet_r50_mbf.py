# Triplet distillation (Feng et al., 2019) baseline: IR50 teacher ->
# MobileFaceNet student, GKD Table 5 setting, with identity-balanced batches so
# that every batch holds positives: per GPU 32 random images + 24 identities x
# 4 images (128, as in the skeleton; an epoch = as many images as the plain
# sampler's). Loss: ArcFace on the whole batch + 1.0 x triplet loss over all
# valid triplets of the batch gathered over all GPUs, squared L2 distance of
# normalized embeddings, margin 0.2 + 0.3 x (teacher's d(a,n) - d(a,p),
# clamped at 0, over its batch maximum) -- m_min/m_max of the authors' code.
_base_ = [
    '../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/triplet.py',
    '../_base_/samplers/pk_sampler.py'
]
num_ids = 24

model = dict(
    distill_losses=dict(
        triplet=dict(_base_.triplet_loss, metric='squared_l2', mining='all',
                     gather=True)))
train_dataloader = dict(
    _base_.pk_train_dataloader,
    batch_size=_base_.num_random + num_ids * _base_.num_per_id,
    sampler=dict(_base_.pk_sampler, num_ids=num_ids, small_ids='repeat'))

# Identity-balanced (P x K) batches, for the losses that need several images
# of an identity in every batch (EKD, triplet distillation): each batch is
# `num_random` random images followed by `num_ids` identities x `num_per_id`
# images (IdentityBalancedSampler; IdentityBalancedBatchSampler cuts its
# stream into these batches and checks batch_size). Defaults: the EKD paper's
# 32 + 8 x 4 = 64 images, an epoch as long as the plain sampler's.
# A config patches its train_dataloader with it,
#   train_dataloader = {{_base_.pk_train_dataloader}}
# or, to change the sampler, with
#   train_dataloader = dict(_base_.pk_train_dataloader,
#                           sampler=dict(_base_.pk_sampler, small_ids=...))
num_random = 32  # random part (the classification loss may see only these)
num_ids = 8  # P identities
num_per_id = 4  # K images per identity
pk_sampler = dict(
    _delete_=True,  # replaces the dataset config's DefaultSampler
    type='IdentityBalancedSampler', num_random=num_random, num_ids=num_ids,
    num_per_id=num_per_id, epoch_length='dataset')
pk_train_dataloader = dict(
    batch_size=num_random + num_ids * num_per_id,
    drop_last=False,  # PyTorch forbids drop_last=True with a batch_sampler
    sampler=pk_sampler,
    batch_sampler=dict(type='IdentityBalancedBatchSampler'))

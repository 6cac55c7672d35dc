# Triplet distillation (Feng et al., 2019) baseline: IR50 teacher ->
# MobileFaceNet student, GKD Table 5 setting, with identity-balanced batches so
# that every batch holds positives: per GPU 32 random images + 24 identities x
# 4 images (128, as in the skeleton; an epoch = as many images as the plain
# sampler's). Loss: ArcFace on the whole batch + 1.0 x triplet loss over all
# valid triplets of the batch gathered over all GPUs, squared L2 distance of
# normalized embeddings, margin 0.2 + 0.3 x (teacher's d(a,n) - d(a,p),
# clamped at 0, over its batch maximum) -- m_min/m_max of the authors' code.
_base_ = '../_base_/distillers/r50_mbf_ms1mv2.py'

num_random = 32
num_ids = 24
num_per_id = 4

model = dict(
    distill_losses=dict(
        triplet=dict(type='TripletDistillationLoss', m_min=0.2, m_max=0.5,
                     metric='squared_l2', mining='all', gather=True,
                     loss_weight=1.0,
                     inputs=dict(student_embedding='student.embedding',
                                 teacher_embedding='teacher.embedding',
                                 gt_label='gt_label'))))

train_dataloader = dict(
    batch_size=num_random + num_ids * num_per_id,
    drop_last=False,  # PyTorch forbids drop_last=True with a batch_sampler
    sampler=dict(_delete_=True, type='IdentityBalancedSampler',
                 num_random=num_random, num_ids=num_ids,
                 num_per_id=num_per_id, small_ids='repeat',
                 epoch_length='dataset'),
    batch_sampler=dict(type='IdentityBalancedBatchSampler'))

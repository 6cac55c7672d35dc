# Triplet distillation on the synthetic set (CPU): identity-balanced batches of
# 32 random images + 8 identities x 4 images (the synthetic set has 15-25
# images per identity, 300 identities), `epoch_length='dataset'` keeps the
# other demo methods' 94 batches of 64 per epoch. ArcFace on the whole batch +
# 5 x the triplet loss with the teacher-adaptive margin 0.2..0.5. Demo weight
# 5: its gradient on the student backbone is then ~0.5x the ArcFace gradient at
# the start of training (weight 1 gives ~0.1x; measured on one synthetic batch
# with the demo teacher).
_base_ = './_distill_r18_mbf_synth.py'

num_random = 32
num_ids = 8
num_per_id = 4

model = dict(
    distill_losses=dict(
        triplet=dict(type='TripletDistillationLoss', m_min=0.2, m_max=0.5,
                     loss_weight=5.0,
                     inputs=dict(student_embedding='student.embedding',
                                 teacher_embedding='teacher.embedding',
                                 gt_label='gt_label'))))

train_dataloader = dict(
    batch_size=num_random + num_ids * num_per_id,
    drop_last=False,  # PyTorch forbids drop_last=True with a batch_sampler
    sampler=dict(_delete_=True, type='IdentityBalancedSampler',
                 num_random=num_random, num_ids=num_ids,
                 num_per_id=num_per_id, epoch_length='dataset'),
    batch_sampler=dict(type='IdentityBalancedBatchSampler'))

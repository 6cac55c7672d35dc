# EKD on the synthetic set (CPU): the demo teacher -> the demo student, with
# identity-balanced batches of 32 random images + 8 identities x 4 images
# (the synthetic set has 15-25 images per identity, 300 identities).
# Same model, schedule and images per epoch as the other demo methods:
# `epoch_length='dataset'` keeps 6065 // 64 = 94 batches of 64 per epoch (the
# paper's definition, 'random_part', would double the epoch). The demo student
# head (ArcFace s=32, m=0.3, shared by all demo methods) is kept.
_base_ = './_distill_r18_mbf_synth.py'

num_random = 32
num_ids = 8
num_per_id = 4

model = dict(
    # classification loss on the random part (first 32 samples) only
    student_cls_samples=num_random,
    distill_losses=dict(
        ekd=dict(type='EKDLoss', loss_weight=1.0,
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

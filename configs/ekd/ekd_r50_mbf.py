# EKD (Huang et al., CVPR 2022; docs/PAPERS.md §3): IR50 teacher ->
# MobileFaceNet student on MS1MV2, in the GKD Table 5 setting.
#   tools/dist_train.sh configs/ekd/ekd_r50_mbf.py 8
# Differences from the skeleton (../_base_/distillers/r50_mbf_ms1mv2.py,
# the setting of gkd_r50_mbf.py; everything else is inherited):
#   * loss: margin-softmax CE + 1.0 x EKD on all-gathered embeddings;
#   * student head: ArcFace s=64, m=0.4 (EKD paper), CE on the random part of
#     each batch only (`student_cls_samples`);
#   * batches: 32 random images + 8 identities x 4 images per GPU;
#   * lr steps at epochs 10/18/22 (26 epochs, SGD lr 0.1 as the base).
_base_ = '../_base_/distillers/r50_mbf_ms1mv2.py'

num_random = 32  # random part per GPU (the classification loss sees these)
num_ids = 8  # P identities per GPU
num_per_id = 4  # K images per identity

model = dict(
    student=dict(head=dict(m=0.4)),
    # the sampler puts the random part first in every batch
    student_cls_samples=num_random,
    distill_losses=dict(
        ekd=dict(type='EKDLoss',
                 fprs=(1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6), momentum=0.01,
                 temperature=0.01, num_hard_negatives=2000, pos_weight=0.02,
                 neg_weight=0.01, gather=True, loss_weight=1.0,
                 inputs=dict(student_embedding='student.embedding',
                             teacher_embedding='teacher.embedding',
                             gt_label='gt_label'))))

train_dataloader = dict(
    batch_size=num_random + num_ids * num_per_id,  # 64 per GPU
    drop_last=False,  # PyTorch forbids drop_last=True with a batch_sampler
    sampler=dict(_delete_=True, type='IdentityBalancedSampler',
                 num_random=num_random, num_ids=num_ids,
                 num_per_id=num_per_id, small_ids='repeat',
                 # an epoch = the random parts cover MS1MV2 once (all GPUs)
                 epoch_length='random_part'),
    # cuts the sampler's stream into its batches and checks batch_size
    batch_sampler=dict(type='IdentityBalancedBatchSampler'))

# EKD's schedule: lr ÷10 at epochs 10, 18 and 22 (sgd_26e.py steps at 24);
# the one-epoch linear warm-up of sgd_26e.py is kept.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='MultiStepLR', by_epoch=True, milestones=[10, 18, 22],
         gamma=0.1),
]
# lr 0.1 assumed for 8 GPUs x 64 images (the GPU count is not in PAPERS.md).
auto_scale_lr = dict(base_batch_size=512, enable=False)

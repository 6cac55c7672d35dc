# EKD (Huang et al., CVPR 2022; docs/papers.md §3): IR50 teacher ->
# MobileFaceNet student on MS1MV2, in the GKD Table 5 setting.
#   tools/dist_train.sh configs/ekd/ekd_r50_mbf.py 8
# Differences from the skeleton (../_base_/distillers/r50_mbf_ms1mv2.py,
# the setting of gkd_r50_mbf.py; everything else is inherited):
#   * loss: margin-softmax CE + 1.0 x EKD on all-gathered embeddings;
#   * student head: ArcFace s=64, m=0.4 (EKD paper), CE on the random part of
#     each batch only (`cls_loss_on='random_part'` on the sampler);
#   * batches: 32 random images + 8 identities x 4 images per GPU;
#   * lr steps at epochs 10/18/22 (26 epochs, SGD lr 0.1 as the base).
_base_ = [
    '../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/ekd.py',
    # 32 random images + 8 identities x 4 images per GPU
    '../_base_/samplers/pk_sampler.py'
]
model = dict(
    student=dict(head=dict(m=0.4)),
    distill_losses=dict(
        ekd=dict(_base_.ekd_loss,
                 fprs=(1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6), momentum=0.01,
                 temperature=0.01, num_hard_negatives=2000, pos_weight=0.02,
                 neg_weight=0.01, gather=True)))
train_dataloader = dict(
    _base_.pk_train_dataloader,  # 64 per GPU
    sampler=dict(_base_.pk_sampler, small_ids='repeat',
                 # an epoch = the random parts cover MS1MV2 once (all GPUs)
                 epoch_length='random_part',
                 # each sample carries with_cls_loss: True on the random part
                 cls_loss_on='random_part'))

# EKD's schedule: lr ÷10 at epochs 10, 18 and 22 (sgd_26e.py steps at 24);
# the one-epoch linear warm-up of sgd_26e.py is kept.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='MultiStepLR', by_epoch=True, milestones=[10, 18, 22],
         gamma=0.1),
]
# lr 0.1 assumed for 8 GPUs x 64 images (docs/papers.md has no GPU count).
auto_scale_lr = dict(base_batch_size=512, enable=False)

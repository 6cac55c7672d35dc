# AdaDistill (Boutros et al., ECCV 2024; docs/papers.md §5): IR50 teacher ->
# MobileFaceNet student on MS1MV2, the paper's AdaArcDistill.
#   tools/dist_train.sh configs/adadistill/adadistill_r50_mbf.py 4
# Differences from the skeleton (../_base_/distillers/r50_mbf_ms1mv2.py, the
# setting of gkd_r50_mbf.py; everything else is inherited):
#   * loss: ArcFace (s=64, m=0.45) over EMA class centres of the teacher's
#     embeddings (AdaDistillLoss, which owns them as checkpointed buffers);
#     no KD term, no classifier of the student's own (student.head=None);
#   * schedule: the paper's as summarized (docs/papers.md §5; its method
#     text was not available verbatim) — 4 GPUs x 128 images, SGD lr 0.1
#     divided by 10 at iterations 80K/140K/210K/280K, no warm-up stated, so
#     none; 26 epochs as the skeleton (~296K iterations of 512 on MS1MV2).
# Only teacher embeddings are read: add
#   --cfg-options model.teacher_cache=work_dirs/cache/r50.npy
# after `python tools/misc/cache_teacher.py <this config> --out ...`.
_base_ = [
    '../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/adadistill.py'
]
model = dict(
    student=dict(head=None),
    distill_losses=dict(adadistill=_base_.adadistill_loss))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=False,
         milestones=[80000, 140000, 210000, 280000], gamma=0.1),
]
# lr 0.1 for 4 GPUs x 128 (the paper's batch of 512)
auto_scale_lr = dict(base_batch_size=512, enable=False)

# Teacher: Swin-T (mmpretrain, patch 2 at 112x112) + ArcFace on MS1MV2,
# validated on the five .bin sets; the Swin teacher of CAKD.
#   tools/dist_train.sh configs/arcface/arcface_swin_t_ms1mv2.py 8 --amp
#
# Optimizer like insightface's ViT recipes (arcface_torch wf42m_*_vit_t:
# AdamW, lr 1e-3, wd 0.1, warmup num_epoch // 10, then polynomial decay with
# power 2, 40 epochs) and Swin's own (AdamW 1e-3 at batch 1024, wd 0.05, no
# decay on norms / biases / relative-position tables). We use lr 1e-3 at
# 8 GPUs x 128 = 1024 images, wd 0.05 on weights only, 4 warmup epochs, poly
# power 2 to 0 at epoch 40. --auto-scale-lr rescales the lr linearly to
# another total batch (base 1024).
_base_ = [
    '../_base_/models/swin_t.py', '../_base_/datasets/ms1mv2.py',
    '../_base_/datasets/verification.py', '../_base_/schedules/adamw_40e.py',
    '../_base_/default_runtime.py'
]
# adamw_40e.py with Swin's weight decay 0.05 on weights only
optim_wrapper = dict(
    optimizer=dict(weight_decay=0.05, betas=(0.9, 0.999), eps=1e-8),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'.relative_position_bias_table': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=5.0))

# gkd_r50_mbf_pfc.py on WebFace42M (2,059,906 identities) with Partial FC
# sampling r = 0.2 (insightface's WebFace42M recipes): the student and the
# frozen teacher head are sharded over the ranks, so neither (C, 512) head
# (4.2 GB each in float32) is held by one GPU; per-rank bytes for 8 / 64 GPUs
# in docs/partial_fc.md ("Memory model").
#   NNODES=8 NODE_RANK=<0..7> MASTER_ADDR=<node 0> PORT=29500 \
#     tools/dist_train.sh configs/gkd/gkd_r50_mbf_pfc_webface42m.py 8
# Data: ../_base_/datasets/webface42m.py (data/webface42m, RecordIO + .bin).
# Teacher: an IResNet-50 ArcFace trained on WebFace42M with its full
# (2059906, 512) head at checkpoints/arcface_r50_webface42m.pth (a
# PartialFCHead run saves the full head; insightface's per-rank
# softmax_fc_gpu_<rank>.pt files merge with tools/misc/merge_partial_fc.py).
# lr 0.1 is for 8 x 128 images: use --auto-scale-lr on more GPUs.
# The same parts as gkd_r50_mbf_pfc.py (gkd_r50_mbf.py's distiller, loss,
# schedule and runtime) with WebFace42M instead of MS1MV2
# (tests/test_configs/test_partial_fc_configs.py checks they agree).
_base_ = [
    '../_base_/distillers/r50_mbf.py', '../_base_/datasets/webface42m.py',
    '../_base_/schedules/sgd_26e.py', '../_base_/default_runtime.py',
    '../_base_/losses/gkd.py'
]
pfc_head = dict(_delete_=True, type='PartialFCHead', num_classes=2059906,
                in_channels=512, s=64.0, m1=1.0, m2=0.5, m3=0.0)
pfc_sample_rate = 0.2
model = dict(
    student=dict(head=dict(pfc_head, sample_rate=pfc_sample_rate)),
    teacher=dict(head=pfc_head),
    teacher_ckpt='checkpoints/arcface_r50_webface42m.pth',
    distill_losses=dict(gkd=dict(
        _base_.gkd_loss, type='ShardedGKDLoss',
        inputs=dict(_base_.gkd_loss.inputs,
                    gt_label='student.column_label'))))

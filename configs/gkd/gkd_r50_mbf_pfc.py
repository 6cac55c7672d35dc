# GKD (gkd_r50_mbf.py, GKD Table 5 setting) with class-sharded heads (Partial
# FC, issue 12), for class counts past one GPU's memory:
#   tools/dist_train.sh configs/gkd/gkd_r50_mbf_pfc.py 8
# The student's ArcFace head is a PartialFCHead (the 85,742 class centres
# split over the ranks, r = 1: every class every step, i.e. plain model
# parallelism), the frozen teacher's head a PartialFCHead that loads the full
# head of checkpoints/arcface_r50_ms1mv2.pth (each rank keeps its rows) and
# computes its logits on the student's columns; the GKD loss of
# ../_base_/losses/gkd.py runs on the sharded logits (ShardedGKDLoss, same
# arguments) with the labels as global columns (`student.column_label`).
# With r = 1 it is the same objective as gkd_r50_mbf.py (tested on 2 and 4
# ranks). Checkpoints hold the full head and momentum
# (ShardedHeadCheckpointHook): --resume works on another number of GPUs.
# Per-rank memory of the heads: docs/partial_fc.md ("Memory model").
_base_ = ['./gkd_r50_mbf.py']
# the ArcFace heads of the base (s = 64, m = 0.5) as Partial FC heads
pfc_head = dict(_delete_=True, type='PartialFCHead', num_classes=85742,
                in_channels=512, s=64.0, m1=1.0, m2=0.5, m3=0.0)
pfc_sample_rate = 1.0
model = dict(
    student=dict(head=dict(pfc_head, sample_rate=pfc_sample_rate)),
    teacher=dict(head=pfc_head),
    distill_losses=dict(gkd=dict(
        type='ShardedGKDLoss', inputs=dict(gt_label='student.column_label'))))

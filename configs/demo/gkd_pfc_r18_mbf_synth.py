# GKD with class-sharded heads (Partial FC, issue 12) on the synthetic set
# (CPU, gloo):
#   tools/dist_train.sh configs/demo/gkd_pfc_r18_mbf_synth.py 2
# The student's ArcFace head is a PartialFCHead (its 300 class centres split
# over the ranks, half of each rank's negatives sampled per step), the frozen
# teacher's head a PartialFCHead loaded from the full demo teacher checkpoint
# (each rank keeps its rows) that computes its logits on the student's sampled
# classes; the GKD loss of gkd_r18_mbf_synth.py runs on the sharded logits
# (ShardedGKDLoss: eq. 3 and the group sums across ranks), with the labels as
# global columns of the sampled support.
# Checkpoints hold the full head and momentum (ShardedHeadCheckpointHook):
# --resume works on another number of processes (docs/partial_fc.md).
_base_ = ['./gkd_r18_mbf_synth.py']
pfc_head = dict(_delete_=True, type='PartialFCHead', num_classes=300,
                in_channels=128, s=32.0, m1=1.0, m2=0.3, m3=0.0)
model = dict(
    student=dict(head=dict(pfc_head, sample_rate=0.5)),
    teacher=dict(head=pfc_head),
    distill_losses=dict(gkd=dict(
        type='ShardedGKDLoss', inputs=dict(gt_label='student.column_label'))))

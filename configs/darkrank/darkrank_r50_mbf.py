# DarkRank (Chen et al., AAAI 2018) baseline: IR50 teacher -> MobileFaceNet
# student, GKD Table 5 setting. Hard (ListMLE) transfer of the teacher's 3
# nearest neighbours of every sample, scores -3 * d^3 on L2-normalized
# embeddings, within the batch gathered over all GPUs; weight 1 as in the
# face-recognition baselines of the EKD authors.
_base_ = [
    '../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/darkrank.py'
]
model = dict(distill_losses=dict(
    darkrank=dict(_base_.darkrank_loss, normalize=True, gather=True)))

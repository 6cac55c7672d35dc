# Similarity-preserving KD (Tung & Mori, ICCV 2019) baseline: IR50 teacher ->
# MobileFaceNet student, GKD Table 5 setting. The face-recognition form of
# the EKD authors' baseline: gamma * ||G_s - G_t||_F^2 / B^2 with G the
# cosine-similarity matrix of the L2-normalized embeddings of the batch
# gathered over all GPUs, gamma = 1. The paper's CIFAR form (row-normalized
# Gram matrix of the raw features, gamma = 3000) is sp_gram_r50_mbf.py;
# which of the two GKD Table 5 used is not public.
_base_ = ['../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/sp.py']
model = dict(distill_losses=dict(sp=dict(_base_.sp_loss, gather=True)))

# Similarity-preserving KD (Tung & Mori, ICCV 2019) baseline: IR50 teacher ->
# MobileFaceNet student, GKD Table 5 setting. gamma * ||G_s - G_t||_F^2 / B^2
# with G the row-L2-normalized Gram matrix of the embeddings of the batch
# gathered over all GPUs; gamma = 3000 is the paper's value (no face-specific
# value is published). The face baselines of the EKD authors use the cosine
# matrix instead: normalize_features=True, normalize_rows=False,
# loss_weight=1.0.
_base_ = ['../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/sp.py']
model = dict(
    distill_losses=dict(
        sp=dict(_base_.sp_loss, normalize_features=False, normalize_rows=True,
                gather=True, loss_weight=3000.0)))

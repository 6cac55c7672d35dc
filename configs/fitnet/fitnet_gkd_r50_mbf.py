# FitNet as the GKD authors' public code computes it (WisonZ/GKD,
# distillation/fitnet.py): the squared error between the L2-normalized
# embeddings, summed and divided by 2B (their T = 2), i.e. (1 - cos) averaged
# over the batch; added to the margin softmax. Otherwise fitnet_r50_mbf.py.
_base_ = ['./fitnet_r50_mbf.py']
model = dict(distill_losses=dict(
    fitnet=dict(normalize=True, reduction='batchmean', loss_weight=0.5)))

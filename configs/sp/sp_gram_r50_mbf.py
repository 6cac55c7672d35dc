# SP in the paper's CIFAR form (Tung & Mori, ICCV 2019): gamma *
# ||G~_s - G~_t||_F^2 / B^2 with G~ the row-L2-normalized Gram matrix A A^T
# of the raw embeddings of the batch gathered over all GPUs, gamma = 3000
# (the paper's CIFAR value; no face-specific value is published). Otherwise
# sp_r50_mbf.py. The loss scales as 1/B with row normalization.
_base_ = ['../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/sp.py']
model = dict(distill_losses=dict(sp=dict(_base_.sp_gram_loss, gather=True)))

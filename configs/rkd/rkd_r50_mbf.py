# RKD (Park et al., CVPR 2019) baseline: IR50 teacher -> MobileFaceNet student,
# GKD Table 5 setting. Distance (weight 25) + angle (weight 50) smooth-L1 terms
# on the raw embeddings, as the paper and the face-recognition baselines use
# them, computed on the batch gathered over all GPUs (8 x 128 = 1024; the
# angle term is chunked and checkpointed to fit).
_base_ = ['../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/rkd.py']
model = dict(distill_losses=dict(
    rkd=dict(_base_.rkd_loss, normalize=False, gather=True)))

# DKD with the DKD authors' warm-up ramp: the DKD term is scaled by
# min(epoch / 20, 1) with epochs counted from 1 (their CIFAR-100 setting:
# 1/20 in the first epoch, full weight from the 20th of our 26 on); the
# ArcFace loss is not ramped. Otherwise dkd_r50_mbf.py (which has no ramp,
# as the authors' ImageNet setting, warm-up 1 epoch). A per-iteration ramp:
#   custom_hooks = [dict(_base_.dkd_warmup, by_epoch=False,
#                        warmup_epochs=<iterations>)]
_base_ = ['./dkd_r50_mbf.py']
custom_hooks = [_base_.dkd_warmup]

# Hinton KD baseline (T=4, x T^2): IR50 teacher -> MobileFaceNet student.
_base_ = ['../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/kd.py']
model = dict(distill_losses=dict(kd=dict(_base_.kd_loss, loss_weight=1.0)))

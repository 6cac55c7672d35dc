# Decoupled KD (CVPR 2022) baseline: IR50 teacher -> MobileFaceNet student.
_base_ = ['../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/dkd.py']
model = dict(distill_losses=dict(dkd={{_base_.dkd_loss}}))

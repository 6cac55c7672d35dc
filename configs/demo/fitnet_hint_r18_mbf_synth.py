# FitNet with the paper's intermediate hint on the synthetic set (CPU), same
# budget as the other demo methods: the student's stage-2 map
# (backbone.layers.3, 64x16x16) -> trainable 1x1-conv regressor -> 32x16x16,
# element-mean MSE against the demo teacher's stage-2 map (backbone.layer2,
# 32x16x16), weight 1 (not calibrated on the demo; unmeasured).
_base_ = ['./_distill_r18_mbf_synth.py', '../_base_/losses/fitnet.py']
model = dict(
    recorders=_base_.fitnet_hint_recorders,
    connectors=dict(fitnet_regressor=dict(
        _base_.fitnet_hint_connectors.fitnet_regressor, in_channels=64,
        out_channels=32)),
    distill_losses=dict(fitnet=_base_.fitnet_hint_loss))

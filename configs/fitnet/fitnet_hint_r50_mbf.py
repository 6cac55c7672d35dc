# FitNet with the paper's intermediate hint (Romero et al., ICLR 2015): IR50
# teacher -> MobileFaceNet student, GKD Table 5 setting (skeleton
# ../_base_/distillers/r50_mbf_ms1mv2.py). The student's stage-2 map
# (backbone.layers.3, 128x28x28) goes through a trainable 1x1-conv regressor
# (a distiller connector: it is in the optimizer) and is regressed with L2
# (element-mean MSE, weight 1) onto the teacher's stage-2 map
# (backbone.layer2, 128x28x28), added to the ArcFace loss; one stage, not the
# paper's hint-then-KD stages (see FitNetLoss "Deviations"). The teacher
# runs live (a teacher cache holds no intermediate maps).
_base_ = [
    '../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/fitnet.py'
]
model = dict(
    recorders=_base_.fitnet_hint_recorders,
    connectors=_base_.fitnet_hint_connectors,
    distill_losses=dict(fitnet=_base_.fitnet_hint_loss))

# FitNet (Romero et al., ICLR 2015). Two hints:
# * `fitnet_loss`: the embedding as hint, MSE (element mean) against the
#   teacher's raw embedding, weight 1 (the face baselines' usage,
#   configs/fitnet/fitnet_r50_mbf.py; the demo reweights).
# * `fitnet_hint_*`: the paper's intermediate hint. The student's stage-2 map
#   (MobileFaceNet `layers.3`, 128x28x28 at 112x112) is recorded, mapped by a
#   trainable 1x1-conv regressor (the paper's kernel N_g - N_h + 1 = 1 for
#   equal 28x28 maps) and regressed with L2 onto the teacher's stage-2 map
#   (IResNet `layer2`, 128x28x28); element-mean MSE, weight 1. Use all three
#   (configs/fitnet/fitnet_hint_r50_mbf.py):
#     model = dict(recorders=_base_.fitnet_hint_recorders,
#                  connectors=_base_.fitnet_hint_connectors,
#                  distill_losses=dict(fitnet=_base_.fitnet_hint_loss))
#   Other networks: set the recorder sources and the regressor's
#   in_channels/out_channels (student/teacher channels of the two maps).
fitnet_loss = dict(type='FitNetLoss', loss_weight=1.0,
                   inputs=dict(student_feat='student.embedding',
                               teacher_feat='teacher.embedding'))
fitnet_hint_recorders = dict(
    fitnet_guided=dict(source='student.backbone.layers.3'),
    fitnet_hint=dict(source='teacher.backbone.layer2'))
fitnet_hint_connectors = dict(
    fitnet_regressor=dict(type='ProjectionConnector',
                          input='recorder.fitnet_guided', in_channels=128,
                          out_channels=128, spatial=True))
fitnet_hint_loss = dict(type='FitNetLoss', reduction='mean', loss_weight=1.0,
                        inputs=dict(student_feat='connector.fitnet_regressor',
                                    teacher_feat='recorder.fitnet_hint'))

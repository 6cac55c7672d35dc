# FitNet (Romero et al., ICLR 2015) baseline: IR50 teacher -> MobileFaceNet
# student, GKD Table 5 setting (everything but the loss from the
# skeleton ../_base_/distillers/r50_mbf_ms1mv2.py, as in gkd_r50_mbf.py).
# Face-recognition usage (the EKD authors' baselines): hint = the 512-d
# embedding, MSE (element mean) against the teacher's raw embedding, weight 1,
# added to the ArcFace loss. Both embeddings are 512-d, so no connector.
# For an intermediate hint, record a layer and project it, e.g.
#   recorders=dict(s3=dict(source='student.backbone.<layer>'),
#                  t3=dict(source='teacher.backbone.<layer>')),
#   connectors=dict(hint=dict(type='ProjectionConnector', input='recorder.s3',
#                             in_channels=Cs, out_channels=Ct, spatial=True)),
#   inputs=dict(student_feat='connector.hint', teacher_feat='recorder.t3').
_base_ = [
    '../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/fitnet.py'
]
model = dict(distill_losses=dict(
    fitnet=dict(_base_.fitnet_loss, normalize=False, reduction='mean')))

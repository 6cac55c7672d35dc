# CAKD ablation on the synthetic set, "APT only": trainable teacher prompts,
# no URFM: a plain feature MSE between the student's conv_sep map projected
# by a 1x1 conv (128 -> 64) and the teacher's 8*8 spatial tokens (pooled to
# the student's 4*4 grid; the prompt outputs are dropped, the prompts still
# act on the spatial tokens and train through this loss).
_base_ = './cakd_vit_mbf_synth.py'
model = dict(
    connectors=dict(
        _delete_=True,
        proj_s=dict(type='ProjectionConnector', input='recorder.s_feat',
                    in_channels=128, out_channels=64, spatial=True)),
    distill_losses=dict(
        _delete_=True,
        feat=dict(type='FeatureMSELoss', loss_weight=1.0,
                  teacher_token_grid=(8, 8),
                  inputs=dict(student_feat='connector.proj_s',
                              teacher_feat='recorder.t_tokens'))))

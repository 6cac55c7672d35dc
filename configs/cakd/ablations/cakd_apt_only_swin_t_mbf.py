# CAKD ablation "APT only": trainable teacher prompts, no URFM: a plain
# feature MSE between the student's last map projected by a 1x1 conv
# (512 -> 768) and the teacher's 7x7 spatial tokens (the prompt outputs are
# dropped; the prompts still act on the spatial tokens and train through
# this loss).
_base_ = '../cakd_swin_t_mbf.py'
model = dict(
    connectors=dict(
        _delete_=True,
        proj_s=dict(type='ProjectionConnector', input='recorder.s_feat',
                    in_channels=512, out_channels=768, spatial=True)),
    distill_losses=dict(
        _delete_=True,
        feat=dict(type='FeatureMSELoss', loss_weight=1.0,
                  teacher_token_grid=(7, 7),
                  inputs=dict(student_feat='connector.proj_s',
                              teacher_feat='recorder.t_tokens'))))

# CAKD's distillation part (ACM MM 2023) for a prompted transformer teacher
# -> MobileFaceNet student on MS1MV2 (configs/cakd/cakd_{swin_t,vit_t}_mbf.py):
# URFM per branch on the last pixel features -- teacher `token_out`, student
# MobileFaceNet `conv_sep` (B, 512, 7, 7) -- both -> 49 local features of
# width 256, then CAKDLoss: shared 8-head MSA, L_Attn + L_Feat (weights 1, 1)
# on batch-standardized features + 0.04 x decorrelation.
# The teacher URFM needs the teacher's token width and grid:
#   connectors=dict(urfm_t=dict(_base_.cakd_urfm_t, in_channels=768,
#                               token_grid=(7, 7)),
#                   urfm_s={{_base_.cakd_urfm_s}})
cakd_recorders = dict(t_tokens=dict(source='teacher.backbone.token_out'),
                      s_feat=dict(source='student.backbone.conv_sep'))
cakd_urfm_t = dict(type='URFM', input='recorder.t_tokens', embed_dims=256)
cakd_urfm_s = dict(type='URFM', input='recorder.s_feat', in_channels=512,
                   embed_dims=256)
cakd_loss = dict(
    type='CAKDLoss', embed_dims=256, num_heads=8, lambda_attn=1.0,
    lambda_feat=1.0,
    # batch-standardized features + VICReg-style decorrelation against the
    # collapse of the trainable URFMs/MSA (see CAKDLoss); 0 = the paper's
    # formula, which collapses (pc1 0.999) with or without the APT identity
    # anchor, while 0.04 keeps pc1 at 0.24 (measured: docs/cakd.md)
    normalize='batch', decorrelation=0.04,
    inputs=dict(student_local='connector.urfm_s',
                teacher_local='connector.urfm_t'))

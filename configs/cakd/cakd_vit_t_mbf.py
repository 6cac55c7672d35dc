# CAKD (ACM MM 2023): ViT-T teacher -> MobileFaceNet student on MS1MV2.
#   tools/dist_train.sh configs/cakd/cakd_vit_t_mbf.py 8
# Needs the teacher at checkpoints/arcface_vit_t_ms1mv2.pth (train it with
# configs/arcface/arcface_vit_t_ms1mv2.py). The plain ViT checkpoint loads
# into the prompted backbone; the prompts start fresh.
#
# * APT: t=4 prompts per group of 3 blocks (FaceViT prompt_cfg); they are
#   the only trainable teacher parameters and train through the CAKD loss.
# * URFM per branch on the last pixel features: teacher `token_out`
#   (B, 12*12 + 4, 256), student MobileFaceNet `conv_sep` (B, 512, 7, 7);
#   both -> 49 local features of width 256.
# * CAKDLoss: shared 8-head MSA, L_Attn + L_Feat (weights 1, 1) on
#   batch-standardized features, + 0.04 x decorrelation (project decision
#   against collapse), plus the student's own ArcFace loss.
# Decisions where the paper is not public: see mmfacekd/models/connectors/
# urfm.py and mmfacekd/models/losses/cakd.py.
# MS1MV2 data and the GKD student schedule (CAKD's own schedule is not public).
_base_ = [
    '../_base_/distillers/vit_t_mbf.py', '../_base_/ms1mv2_sgd_26e.py'
]
model = dict(
    # 4 prompts per group of 3 blocks: fresh prompts every 3 blocks, as
    # Swin-T (the paper's teacher) gets them in each of its 4 stages
    teacher=dict(backbone=dict(prompt_cfg=dict(num_prompts=4, groups=4))),
    teacher_trainable=['backbone.prompts'],
    recorders=dict(
        t_tokens=dict(source='teacher.backbone.token_out'),
        s_feat=dict(source='student.backbone.conv_sep')),
    connectors=dict(
        urfm_t=dict(type='URFM', input='recorder.t_tokens', in_channels=256,
                    embed_dims=256, token_grid=(12, 12)),
        urfm_s=dict(type='URFM', input='recorder.s_feat', in_channels=512,
                    embed_dims=256)),
    distill_losses=dict(
        cakd=dict(type='CAKDLoss', embed_dims=256, num_heads=8,
                  lambda_attn=1.0, lambda_feat=1.0,
                  # batch-standardized features + VICReg-style
                  # decorrelation against the collapse of the trainable
                  # URFMs/MSA (see CAKDLoss); 0 = the paper's formula
                  normalize='batch', decorrelation=0.04,
                  inputs=dict(student_local='connector.urfm_s',
                              teacher_local='connector.urfm_t'))))

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
    '../_base_/distillers/vit_t_mbf.py', '../_base_/ms1mv2_sgd_26e.py',
    '../_base_/losses/cakd.py'
]
model = dict(
    # 4 prompts per group of 3 blocks: fresh prompts every 3 blocks, as
    # Swin-T (the paper's teacher) gets them in each of its 4 stages
    teacher=dict(backbone=dict(prompt_cfg=dict(num_prompts=4, groups=4))),
    teacher_trainable=['backbone.prompts'],
    recorders={{_base_.cakd_recorders}},
    connectors=dict(
        urfm_t=dict(_base_.cakd_urfm_t, in_channels=256, token_grid=(12, 12)),
        urfm_s={{_base_.cakd_urfm_s}}),
    distill_losses=dict(cakd={{_base_.cakd_loss}}))

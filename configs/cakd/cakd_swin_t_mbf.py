# CAKD (ACM MM 2023): Swin-T teacher -> MobileFaceNet student on MS1MV2.
#   tools/dist_train.sh configs/cakd/cakd_swin_t_mbf.py 8
# Needs the teacher at checkpoints/arcface_swin_t_ms1mv2.pth (train it with
# configs/arcface/arcface_swin_t_ms1mv2.py). The plain Swin checkpoint loads
# into the prompted backbone; the prompts start fresh.
#
# * APT: t=4 prompts per stage (PromptedSwinTransformer); they are the only
#   trainable teacher parameters and train through the CAKD loss.
# * URFM per branch on the last pixel features: teacher `token_out`
#   (B, 7*7 + 4, 768), student MobileFaceNet `conv_sep` (B, 512, 7, 7);
#   both -> 49 local features of width 256.
# * CAKDLoss: shared 8-head MSA, L_Attn + L_Feat (weights 1, 1) on
#   batch-standardized features, + 0.04 x decorrelation (project decision
#   against collapse), plus the student's own ArcFace loss.
# Decisions where the paper is not public: see mmfacekd/models/connectors/
# urfm.py and mmfacekd/models/losses/cakd.py.
# MS1MV2 data and the GKD student schedule (CAKD's own schedule is not public).
_base_ = [
    '../_base_/distillers/swin_t_mbf.py', '../_base_/ms1mv2_sgd_26e.py',
    '../_base_/losses/cakd.py'
]
model = dict(
    teacher=dict(backbone=dict(type='PromptedSwinTransformer',
                               prompt_cfg=dict(num_prompts=4))),
    teacher_trainable=['backbone.prompts'],
    recorders={{_base_.cakd_recorders}},
    connectors=dict(
        urfm_t=dict(_base_.cakd_urfm_t, in_channels=768, token_grid=(7, 7)),
        urfm_s={{_base_.cakd_urfm_s}}),
    distill_losses=dict(cakd={{_base_.cakd_loss}}))

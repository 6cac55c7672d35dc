# CAKD on the synthetic set (CPU):
#   tools/dist_train.sh configs/demo/cakd_vit_mbf_synth.py 2
# The demo ViT teacher (arcface_vit_synth.py; `make demo` copies its final
# checkpoint to checkpoints/demo/arcface_vit_synth.pth) -> the demo
# MobileFaceNet student, same data, 64x64 input and 4-epoch schedule as the
# other demo distillers. configs/cakd/cakd_vit_t_mbf.py scaled down:
# * APT: 4 prompts per group of 2 blocks in the teacher, trained through
#   the CAKD loss only;
# * URFM on the teacher's `token_out` (8*8 spatial + 4 prompt tokens, 64-d)
#   and on the student's `conv_sep` map (128 x 4 x 4), 4x4 = 16 local
#   centers (one per student cell) of width 64;
# * CAKDLoss with a shared 4-head MSA, lambda_attn = lambda_feat = 1,
#   batch-standardized features and 0.04 x decorrelation (see CAKDLoss).
_base_ = ['./_distill_r18_mbf_synth.py', '../_base_/losses/cakd.py']
model = dict(
    # the teacher of arcface_vit_synth.py (+ prompts); the checkpoint is
    # loaded strictly, so the two must agree
    teacher=dict(
        _delete_=True,
        type='FaceRecognizer',
        backbone=dict(type='FaceViT', img_size=64, patch_size=8,
                      embed_dim=64, depth=4, num_heads=4, num_features=128,
                      drop_path_rate=0.0, mask_ratio=0.0,
                      prompt_cfg=dict(num_prompts=4, groups=2)),
        head=dict(type='ArcFaceHead', num_classes=300, in_channels=128,
                  s=32.0, m=0.3)),
    teacher_ckpt='checkpoints/demo/arcface_vit_synth.pth',
    teacher_trainable=['backbone.prompts'],
    recorders={{_base_.cakd_recorders}},
    connectors=dict(
        urfm_t=dict(type='URFM', input='recorder.t_tokens', in_channels=64,
                    embed_dims=64, center_grid=(4, 4), token_grid=(8, 8)),
        urfm_s=dict(type='URFM', input='recorder.s_feat', in_channels=128,
                    embed_dims=64, center_grid=(4, 4))),
    distill_losses=dict(
        cakd=dict(type='CAKDLoss', embed_dims=64, num_heads=4,
                  normalize='batch', decorrelation=0.04,
                  inputs=dict(student_local='connector.urfm_s',
                              teacher_local='connector.urfm_t'))))

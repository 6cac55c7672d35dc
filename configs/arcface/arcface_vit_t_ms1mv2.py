# Teacher: insightface ViT-T + ArcFace on MS1MV2, validated on the five .bin
# sets; the ViT teacher of CAKD.
#   tools/dist_train.sh configs/arcface/arcface_vit_t_ms1mv2.py 8 --amp
#
# Optimizer and schedule: ../_base_/schedules/adamw_40e.py (insightface's
# ViT recipe: AdamW lr 1e-3, wd 0.1, warm-up 4 epochs, poly decay, 40 epochs).
_base_ = [
    '../_base_/models/vit_t.py', '../_base_/datasets/ms1mv2.py',
    '../_base_/datasets/verification.py', '../_base_/schedules/adamw_40e.py',
    '../_base_/default_runtime.py'
]

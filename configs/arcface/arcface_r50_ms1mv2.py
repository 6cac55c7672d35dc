# Teacher: IResNet-50 + ArcFace on MS1MV2, validated on the five .bin sets.
#   tools/dist_train.sh configs/arcface/arcface_r50_ms1mv2.py 8
_base_ = [
    '../_base_/models/iresnet50.py', '../_base_/datasets/ms1mv2.py',
    '../_base_/datasets/verification.py', '../_base_/schedules/sgd_26e.py',
    '../_base_/default_runtime.py'
]

# Plain student baseline: MobileFaceNet + ArcFace on MS1MV2.
#   tools/dist_train.sh configs/arcface/arcface_mbf_ms1mv2.py 8
_base_ = [
    '../_base_/models/mobilefacenet.py', '../_base_/datasets/ms1mv2.py',
    '../_base_/datasets/verification.py', '../_base_/schedules/sgd_26e.py',
    '../_base_/default_runtime.py'
]

# MegaFace challenge 1 (FaceScrub probe set, 1M distractors): rank-1
# identification and TPR at FPR 1e-6. Metric keys (%):
#   megaface/rank1, megaface/tpr@fpr1e-6
# The MegaFace/FaceScrub files are not redistributed. Expected layout after
# aligning every face to 112x112 (5-point similarity transform onto the
# ArcFace template) with your own tool:
#   data/megaface/
#     facescrub_probe.txt        "<path> <identity>" per line: the 3,530
#                                FaceScrub probe images of 80 identities
#                                (use the devkit's cleaned "no noise" list)
#     megaface_distractors.txt   "<path>" per line: the 1M distractors
#                                (also the cleaned list)
#     facescrub_aligned/<identity>/<image>.jpg
#     megaface_aligned/<...>/<image>.jpg
# Unaligned images: append the 5 landmarks to every line
# ("<path> <identity> x1 y1 ... x5 y5", "<path> x1 y1 ... x5 y5") and put
# an alignment transform after LoadFaceImage (e.g. dict(type='AlignFace')).
# Alternatively, without list files: data/megaface/probe/<identity>/*.jpg +
# data/megaface/distractors/**/*.jpg (IdentificationDataset folder layout).
# Memory: the metric keeps one 512-d float32 embedding per image (1M
# distractors = 2 GB) and scores 4,096 distractors at a time.
_base_ = './test_loader.py'
megaface_data_root = 'data/megaface'
megaface_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True, expected_size=(112, 112)),
    dict(type='PackFaceInputs'),
]
test_dataloader = dict(
    dataset=dict(
        type='IdentificationDataset',
        data_root=megaface_data_root,
        probe_list='facescrub_probe.txt',
        distractor_list='megaface_distractors.txt',
        set_name='megaface',
        pipeline=megaface_pipeline))
test_evaluator = dict(type='IdentificationMetric', fprs=(1e-6, ), ranks=(1, ),
                      chunk=4096)

# The IJB-B and IJB-C 1:1 template verification sets (insightface's IJB
# bundle, not redistributed), defined once for ijbb.py, ijbc.py and
# paper_suite.py. Expected layout, <N> = IJBB, IJBC and <n> = ijbb, ijbc:
#   data/ijb/<N>/loose_crop/*.jpg
#   data/ijb/<N>/meta/<n>_name_5pts_score.txt     image x1 y1 ... x5 y5 score
#   data/ijb/<N>/meta/<n>_face_tid_mid.txt        image template_id media_id
#   data/ijb/<N>/meta/<n>_template_pair_label.txt template1 template2 label
# Each image is aligned by its 5 landmarks (AlignFace), embedded with its
# flip (model test_cfg flip=True), then pooled per media / template.
# Metric keys (%): <n>/tpr@fpr1e-6 ... <n>/tpr@fpr1e-1; the TPR table, a
# JSON and the ROC curve PNG go to the run's log directory.
# Ablations: IJBMetric(use_norm_score=False / use_detector_score=False),
# model test_cfg=dict(flip=False).
ijb_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True),
    dict(type='AlignFace', output_size=112),
    dict(type='PackFaceInputs'),
]
ijb_sets = ['ijbc', 'ijbb']
ijb_datasets = {
    name: dict(type='IJBDataset', data_root=f'data/ijb/{name.upper()}',
               name=name, pipeline=ijb_pipeline)
    for name in ijb_sets
}
# the metric reads the pair file from the IJBDataset
ijb_evaluators = {name: dict(type='IJBMetric', set_name=name)
                  for name in ijb_sets}

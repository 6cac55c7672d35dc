# IJBB 1:1 template verification (insightface's IJB bundle, not
# redistributed). Expected layout:
#   data/ijb/IJBB/loose_crop/*.jpg
#   data/ijb/IJBB/meta/ijbb_name_5pts_score.txt     image x1 y1 ... x5 y5 score
#   data/ijb/IJBB/meta/ijbb_face_tid_mid.txt        image template_id media_id
#   data/ijb/IJBB/meta/ijbb_template_pair_label.txt template1 template2 label
# Each image is aligned by its 5 landmarks (AlignFace), embedded with its
# flip (model test_cfg flip=True), then pooled per media / template.
# Metric keys (%): ijbb/tpr@fpr1e-6 ... ijbb/tpr@fpr1e-1; the TPR table, a JSON
# and the ROC curve PNG go to the run's log directory.
# Ablations: IJBMetric(use_norm_score=False / use_detector_score=False),
# model test_cfg=dict(flip=False).
ijbb_data_root = 'data/ijb/IJBB'
ijbb_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True),
    dict(type='AlignFace', output_size=112),
    dict(type='PackFaceInputs'),
]
ijbb_dataset = dict(type='IJBDataset', data_root=ijbb_data_root, name='ijbb',
                   pipeline=ijbb_pipeline)
ijbb_evaluator = dict(type='IJBMetric', set_name='ijbb', data_root=ijbb_data_root,
                     pair_file='meta/ijbb_template_pair_label.txt')
test_dataloader = dict(
    batch_size=256,
    num_workers=4,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=ijbb_dataset)
test_evaluator = ijbb_evaluator

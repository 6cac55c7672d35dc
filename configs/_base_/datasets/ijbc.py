# IJBC 1:1 template verification (insightface's IJB bundle, not
# redistributed). Expected layout:
#   data/ijb/IJBC/loose_crop/*.jpg
#   data/ijb/IJBC/meta/ijbc_name_5pts_score.txt     image x1 y1 ... x5 y5 score
#   data/ijb/IJBC/meta/ijbc_face_tid_mid.txt        image template_id media_id
#   data/ijb/IJBC/meta/ijbc_template_pair_label.txt template1 template2 label
# Each image is aligned by its 5 landmarks (AlignFace), embedded with its
# flip (model test_cfg flip=True), then pooled per media / template.
# Metric keys (%): ijbc/tpr@fpr1e-6 ... ijbc/tpr@fpr1e-1; the TPR table, a JSON
# and the ROC curve PNG go to the run's log directory.
# Ablations: IJBMetric(use_norm_score=False / use_detector_score=False),
# model test_cfg=dict(flip=False).
ijbc_data_root = 'data/ijb/IJBC'
ijbc_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True),
    dict(type='AlignFace', output_size=112),
    dict(type='PackFaceInputs'),
]
ijbc_dataset = dict(type='IJBDataset', data_root=ijbc_data_root, name='ijbc',
                   pipeline=ijbc_pipeline)
ijbc_evaluator = dict(type='IJBMetric', set_name='ijbc', data_root=ijbc_data_root,
                     pair_file='meta/ijbc_template_pair_label.txt')
test_dataloader = dict(
    batch_size=256,
    num_workers=4,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=ijbc_dataset)
test_evaluator = ijbc_evaluator

# The embedded synthetic face set (tools/misc/make_synthetic_faces.py writes
# it; `make demo` does so when it is missing): a real RecordIO training set and
# real .bin pair sets of procedurally drawn, 112x112-aligned faces.
_base_ = './val_test_loaders.py'
data_root = 'data/synthetic'
num_classes = 300
train_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True, expected_size=(112, 112)),
    dict(type='mmcv.RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackFaceInputs'),
]
test_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True, expected_size=(112, 112)),
    dict(type='PackFaceInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='MXRecordDataset', data_root=data_root,
                 pipeline=train_pipeline))
val_sets = ['synth_lfw', 'synth_cfp', 'synth_agedb']
val_dataloader = dict(
    batch_size=128,
    num_workers=1,
    dataset=dict(
        type='ConcatDataset',
        datasets=[
            dict(type='VerificationBinDataset', data_root=data_root,
                 ann_file=f'{name}.bin', pipeline=test_pipeline)
            for name in val_sets
        ]))
val_evaluator = dict(type='VerificationMetric')

# The test set is the synthetic evaluation suite of `make demo`, each part in
# the real on-disk layout of its protocol (`tools/test.py` prints one row):
#   * the three .bin pair sets (3,000 pairs each, verification, 10 folds);
#   * a 1:N identification set (MegaFace challenge-1 protocol: 492 probes vs
#     same-identity gallery images + 2,000 distractors, ~984k impostor
#     pairs, so TPR@FPR=1e-4 rests on ~98 false accepts),
#     data/synthetic/identification;
#   * an IJB-style template bundle (loose crops aligned by their 5 landmarks,
#     image+flip, face-score weighting, media/template pooling, TPR@FPR;
#     691 templates, 237k impostor pairs, so 1e-4 rests on ~24 false
#     accepts), data/synthetic/ijb, reported as synth_ijbc/tpr@fpr1e-4 etc.
# The masked M-M / M-N variants (GKD Table 7) are in synthetic_masked.py
# (`make comparison`; `tools/test.py CFG CKPT --suite
# configs/_base_/datasets/synthetic_masked.py`).
# `make demo` writes what is missing with tools/misc/make_synthetic_faces.py.
verification_tests = [
    dict(type='VerificationBinDataset', data_root=data_root,
         ann_file=f'{name}.bin', pipeline=test_pipeline)
    for name in val_sets
]
protocol_tests = [
    dict(type='IJBDataset', data_root=data_root + '/ijb', name='ijbc',
         set_name='synth_ijbc',
         pipeline=[dict(type='LoadFaceImage', to_rgb=True),
                   dict(type='AlignFace'),
                   dict(type='PackFaceInputs')]),
    dict(type='IdentificationDataset',
         data_root=data_root + '/identification',
         probe_list='probe_list.txt', distractor_list='distractor_list.txt',
         set_name='synth_megaface', pipeline=test_pipeline),
]
test_dataloader = dict(
    batch_size=128,
    num_workers=1,
    # the parts carry different metainfo (e.g. identification counts)
    dataset=dict(type='ConcatDataset',
                 datasets=verification_tests + protocol_tests,
                 ignore_keys=['identities', 'num_probes', 'num_distractors',
                              'set_name', 'num_templates', 'num_images',
                              'num_pairs']))
test_evaluator = [
    # mean/accuracy stays the mean of the three unmasked sets
    dict(type='VerificationMetric', mean_sets=val_sets),
    dict(type='IdentificationMetric', set_names=['synth_megaface'],
         fprs=(1e-5, 1e-4, 1e-3)),
    # the pair file comes from the IJBDataset
    dict(type='IJBMetric', set_name='synth_ijbc',
         fprs=(1e-4, 1e-3, 1e-2, 1e-1)),
]

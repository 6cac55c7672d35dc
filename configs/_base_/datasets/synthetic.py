# The embedded synthetic face set (tools/misc/make_synthetic_faces.py writes it;
# `make demo` does so when it is missing): a real RecordIO training set and
# real .bin pair sets of procedurally drawn, 112x112-aligned faces.
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
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ConcatDataset',
        datasets=[
            dict(type='VerificationBinDataset', data_root=data_root,
                 ann_file=f'{name}.bin', pipeline=test_pipeline)
            for name in val_sets
        ]))
val_evaluator = dict(type='VerificationMetric')
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# The five standard verification sets shipped with insightface's MS1MV2:
#   data/ms1mv2/{lfw, cfp_fp, agedb_30, calfw, cplfw}.bin
# Metric keys: lfw/accuracy, cfp_fp/accuracy, ..., mean/accuracy.
val_data_root = 'data/ms1mv2'
val_sets = ['lfw', 'cfp_fp', 'agedb_30', 'calfw', 'cplfw']
test_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True),
    dict(type='PackFaceInputs'),
]
val_dataloader = dict(
    batch_size=256,
    num_workers=2,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ConcatDataset',
        datasets=[
            dict(type='VerificationBinDataset', data_root=val_data_root,
                 ann_file=f'{name}.bin', pipeline=test_pipeline)
            for name in val_sets
        ]))
val_evaluator = dict(type='VerificationMetric')
test_dataloader = val_dataloader
test_evaluator = val_evaluator

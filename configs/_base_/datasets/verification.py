# The five standard verification sets shipped with insightface's MS1MV2:
#   data/ms1mv2/{lfw, cfp_fp, agedb_30, calfw, cplfw}.bin
# Metric keys: lfw/accuracy, cfp_fp/accuracy, ..., mean/accuracy.
_base_ = './val_test_loaders.py'
val_data_root = 'data/ms1mv2'
val_sets = ['lfw', 'cfp_fp', 'agedb_30', 'calfw', 'cplfw']
test_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True),
    dict(type='PackFaceInputs'),
]
# (a name starting with __ stays out of the resolved config)
__dataset = dict(
    type='ConcatDataset',
    datasets=[
        dict(type='VerificationBinDataset', data_root=val_data_root,
             ann_file=f'{name}.bin', pipeline=test_pipeline)
        for name in val_sets
    ])
val_dataloader = dict(num_workers=2, dataset=__dataset)
test_dataloader = dict(num_workers=2, dataset=__dataset)
val_evaluator = dict(type='VerificationMetric')
test_evaluator = val_evaluator

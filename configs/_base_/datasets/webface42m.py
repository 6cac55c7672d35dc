# WebFace42M (WebFace260M's cleaned 42M images of 2,059,906 identities) in
# insightface's RecordIO layout, as its WebFace42M recipes read it:
#   data/webface42m/
#     train.rec, train.idx  # aligned 112x112 JPEGs, record 0 the insightface
#                           # header (identity ranges); docs/formats.md
#     property              # optional: "2059906,112,112"
#     lfw.bin, cfp_fp.bin, agedb_30.bin, calfw.bin, cplfw.bin
#                           # the verification sets (pickled pairs), the same
#                           # files as insightface's MS1MV2 release: copy or
#                           # symlink them from data/ms1mv2
# WebFace42M is distributed as aligned images; pack them into this layout
# with any MXNet RecordIO writer (insightface's, or
# mmfacekd.datasets.recordio.IndexedRecordWriter). The training loader is
# ms1mv2.py's (batch 128 per GPU, flip, drop_last), the evaluation loaders
# verification.py's, both pointed here.
_base_ = ['./ms1mv2.py', './verification.py']
data_root = 'data/webface42m'
train_dataloader = dict(
    dataset=dict(data_root=data_root, num_classes=2059906))
val_data_root = data_root
# (a name starting with __ stays out of the resolved config)
__dataset = dict(
    type='ConcatDataset',
    datasets=[
        dict(type='VerificationBinDataset', data_root=val_data_root,
             ann_file=f'{name}.bin', pipeline=_base_.test_pipeline)
        for name in _base_.val_sets
    ])
val_dataloader = dict(dataset=__dataset)
test_dataloader = dict(dataset=__dataset)

# MS1MV2 (faces_emore) in insightface's RecordIO layout:
#   data/ms1mv2/{train.rec, train.idx, property}
dataset_type = 'MXRecordDataset'
data_root = 'data/ms1mv2'
train_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True),
    dict(type='mmcv.RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackFaceInputs'),
]
train_dataloader = dict(
    batch_size=128,  # per GPU
    num_workers=4,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root,
                 num_classes=85742, pipeline=train_pipeline))

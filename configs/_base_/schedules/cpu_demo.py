# A CPU-sized schedule for the synthetic demo: SGD (sgd.py) with a one-epoch
# linear warm-up and a cosine decay, validation at the end only.
_base_ = './sgd.py'
max_epochs = 4
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=1e-3, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)

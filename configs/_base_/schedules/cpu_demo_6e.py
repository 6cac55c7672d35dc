# cpu_demo.py over 6 epochs: the demo teachers train longer than the
# students (6 vs 4 epochs).
_base_ = './cpu_demo.py'
max_epochs = 6
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=1e-3, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)

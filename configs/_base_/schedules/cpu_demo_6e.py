# cpu_demo.py over 6 epochs: the demo teachers train longer than the
# students (6 vs 4 epochs). Same warm-up; the cosine decay runs to epoch 6.
_base_ = './cpu_demo.py'
max_epochs = 6
param_scheduler = [
    _base_.param_scheduler[0],  # warm-up
    dict(_base_.param_scheduler[1], end=max_epochs),  # cosine
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)

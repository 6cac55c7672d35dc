_base_ = [
    '../_base_/models/iresnet18.py', '../_base_/datasets/ms1mv2.py',
    '../_base_/datasets/verification.py', '../_base_/schedules/sgd_26e.py',
    '../_base_/default_runtime.py'
]

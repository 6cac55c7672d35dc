# TensorBoard training curves through MMEngine's Visualizer, next to the
# default LocalVisBackend (<work_dir>/<timestamp>/vis_data/scalars.json).
# Needs `pip install -r requirements/optional.txt` (tensorboard).
# MMEngine refuses a key defined by two bases, and default_runtime.py already
# defines `visualizer`, so this file defines a list under its own name; a
# config switches it on in two lines:
#   _base_ = ['../gkd/gkd_r50_mbf.py', '../_base_/vis_backends/tensorboard.py']
#   visualizer = dict(vis_backends={{_base_.tensorboard_vis_backends}})
# Every logged scalar reaches both backends (LoggerHook, every `interval`
# iterations): student.loss_cls, distill.loss_<name>, distill.<name>.<stat>
# (GKD: k_mean, k_std, k_min, k_max, p_phi_t, primary_kd, binary_kd,
# secondary_kd), lr, and the validation metrics. Events go to
# <work_dir>/<timestamp>/vis_data/; `tensorboard --logdir work_dirs`.
tensorboard_vis_backends = [
    dict(type='LocalVisBackend'),
    dict(type='TensorboardVisBackend'),
]

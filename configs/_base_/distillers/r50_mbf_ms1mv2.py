# The GKD Table 5 experiment without a distillation loss: the r50_mbf.py
# distiller in the MS1MV2 / .bin sets / SGD 26-epoch setting. Every method's
# r50_mbf config inherits it and adds `model.distill_losses`.
_base_ = ['./r50_mbf.py', '../ms1mv2_sgd_26e.py']

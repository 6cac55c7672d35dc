# Moved to configs/margin_distillation/; this path keeps working.
_base_ = './margin_distillation/margin_distillation_r50_mbf.py'

# Moved to configs/kd/kd_r50_mbf.py; this path keeps working.
_base_ = './kd/kd_r50_mbf.py'

# Moved to configs/rkd/rkd_r50_mbf.py; this path keeps working.
_base_ = './rkd/rkd_r50_mbf.py'

# Moved to configs/cckd/cckd_r50_mbf.py; this path keeps working.
_base_ = './cckd/cckd_r50_mbf.py'

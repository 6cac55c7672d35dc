# Moved to configs/dkd/dkd_r50_mbf.py; this path keeps working.
_base_ = './dkd/dkd_r50_mbf.py'

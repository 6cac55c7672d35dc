# Moved to configs/gkd/gkd_r50_mbf.py; this path keeps working.
_base_ = './gkd/gkd_r50_mbf.py'

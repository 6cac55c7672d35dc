# Moved to configs/ekd/ekd_r50_mbf.py; this path keeps working.
_base_ = './ekd/ekd_r50_mbf.py'

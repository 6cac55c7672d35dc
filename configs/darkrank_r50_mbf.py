# Moved to configs/darkrank/darkrank_r50_mbf.py; this path keeps working.
_base_ = './darkrank/darkrank_r50_mbf.py'

# Moved to configs/shrinkteanet/; this path keeps working.
_base_ = './shrinkteanet/shrinkteanet_r50_mbf.py'

# Moved to configs/triplet/triplet_r50_mbf.py; this path keeps working.
_base_ = './triplet/triplet_r50_mbf.py'

# Moved to configs/fitnet/fitnet_r50_mbf.py; this path keeps working.
_base_ = './fitnet/fitnet_r50_mbf.py'

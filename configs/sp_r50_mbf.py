# Moved to configs/sp/sp_r50_mbf.py; this path keeps working.
_base_ = './sp/sp_r50_mbf.py'

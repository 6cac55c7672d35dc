# Moved to configs/gkd/gkd_r100_mbv3l.py; this path keeps working.
_base_ = './gkd/gkd_r100_mbv3l.py'

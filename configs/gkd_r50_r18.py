# Moved to configs/gkd/gkd_r50_r18.py; this path keeps working.
_base_ = './gkd/gkd_r50_r18.py'

# Moved to configs/gkd/gkd_r50_mbf_authors.py; this path keeps working.
_base_ = './gkd/gkd_r50_mbf_authors.py'

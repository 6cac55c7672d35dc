# CAKD ablation: URFM without any positional encoding (content attention of
# the local centers only, hence no locality prior either).
_base_ = '../cakd_swin_t_mbf.py'
model = dict(
    connectors=dict(urfm_t=dict(pos_encoding=False),
                    urfm_s=dict(pos_encoding=False)))

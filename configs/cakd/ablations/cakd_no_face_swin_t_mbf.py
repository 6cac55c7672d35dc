# CAKD ablation: URFM positional encoding without the facial term
# (D = D_geo only: distance between center anchor and pixel).
_base_ = '../cakd_swin_t_mbf.py'
model = dict(
    connectors=dict(urfm_t=dict(face_distance=False),
                    urfm_s=dict(face_distance=False)))

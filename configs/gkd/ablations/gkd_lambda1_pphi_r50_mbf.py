# GKD Table 3: lambda1 = p_Phi^T, the "natural" weight of eq. 9.
_base_ = '../gkd_r50_mbf.py'
model = dict(distill_losses=dict(gkd=dict(lambda1='p_phi_t')))

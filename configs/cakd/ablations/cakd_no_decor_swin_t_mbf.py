# CAKD ablation: the paper's two terms only (no decorrelation term); the
# batch standardization of CAKDLoss stays. Expect the shared MSA's outputs
# to collapse towards one dimension (see CAKDLoss).
_base_ = '../cakd_swin_t_mbf.py'
model = dict(distill_losses=dict(cakd=dict(decorrelation=0.0)))

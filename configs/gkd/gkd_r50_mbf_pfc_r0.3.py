# gkd_r50_mbf_pfc.py with Partial FC sampling r = 0.3: per step every rank
# keeps the positives of the global batch plus random negatives up to 30 % of
# its classes; the teacher's logits and GKD (eq. 3 included) are on the
# sampled support (softmaxes renormalised on it, docs/partial_fc.md).
#   tools/dist_train.sh configs/gkd/gkd_r50_mbf_pfc_r0.3.py 8
_base_ = ['./gkd_r50_mbf_pfc.py']
pfc_sample_rate = 0.3
model = dict(student=dict(head=dict(sample_rate=pfc_sample_rate)))

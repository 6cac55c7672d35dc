# The synthetic suite of synthetic.py plus masked-face M-M / M-N variants of
# synth_cfp and synth_agedb (GKD Table 7 style; mmfacekd's own landmark-based
# mask renderer, so comparable among themselves, not with FaceX-Zoo's masks).
# Used as a --suite: `tools/test.py CFG CKPT --suite
# configs/_base_/datasets/synthetic_masked.py` (`make comparison` does).
# Keys: synth_cfp_mm/accuracy, synth_cfp_mn/accuracy, ... (mean/accuracy stays
# the mean of the three unmasked sets).
_base_ = './synthetic.py'
masked_sets = ['synth_cfp', 'synth_agedb']
masked_tests = [
    dict(type='VerificationBinDataset', data_root=_base_.data_root,
         ann_file=f'{name}.bin', mask=mode, mask_seed=0,
         pipeline=_base_.test_pipeline)
    for name in masked_sets for mode in ('M-M', 'M-N')
]
test_dataloader = dict(dataset=dict(
    datasets=_base_.verification_tests + masked_tests
    + _base_.protocol_tests))

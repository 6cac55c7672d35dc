# Masked-face verification (GKD Table 7): CALFW, CPLFW and AgeDB-30 pairs
# with synthetic masks, M-M (both images of a pair masked) and M-N (the
# second image of every pair masked), on insightface's .bin files
#   data/ms1mv2/{calfw, cplfw, agedb_30}.bin
# The masks come from mmfacekd's own landmark-based renderer
# (mmfacekd/datasets/transforms/synthetic_mask.py), NOT FaceX-Zoo's renderer
# used in the paper: the numbers are comparable among themselves, not
# digit-for-digit with Table 7. Masks are deterministic (seeded by set name
# and image index), identical on every run and rank; M-N masks are exactly
# the M-M masks of the second images.
# Metric keys (%): calfw_mm/accuracy, calfw_mn/accuracy, cplfw_mm/accuracy,
# cplfw_mn/accuracy, agedb_30_mm/accuracy, agedb_30_mn/accuracy,
# mean/accuracy (over these six).
_base_ = './test_loader.py'
masked_data_root = 'data/ms1mv2'
masked_sets = ['calfw', 'cplfw', 'agedb_30']
masked_modes = ['M-M', 'M-N']
masked_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True),
    # VerificationBinDataset(mask=...) inserts ApplyFaceMask here
    dict(type='PackFaceInputs'),
]
masked_datasets = [
    dict(type='VerificationBinDataset', data_root=masked_data_root,
         ann_file=f'{name}.bin', mask=mode, mask_seed=0,
         pipeline=masked_pipeline)
    for name in masked_sets for mode in masked_modes
]
test_dataloader = dict(
    num_workers=2,
    dataset=dict(type='ConcatDataset', datasets=masked_datasets))
test_evaluator = dict(type='VerificationMetric')

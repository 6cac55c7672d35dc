# Every set of GKD Table 5 in one test run:
#   python tools/test.py CONFIG CKPT \
#       --suite configs/_base_/datasets/paper_suite.py
#   tools/dist_test.sh CONFIG CKPT 8 \
#       --suite configs/_base_/datasets/paper_suite.py
# IJB-C, IJB-B (data/ijb/IJBC, data/ijb/IJBB), MegaFace (data/megaface) and
# the five .bin sets (data/ms1mv2); layouts in ijb.py, megaface.py and
# verification.py. tools/test.py prints and saves the summary row in the
# paper's column order. Add masked_verification.py's datasets for Table 7.
_base_ = ['./verification.py', './ijb.py']
aligned_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True, expected_size=(112, 112)),
    dict(type='PackFaceInputs'),
]
test_dataloader = dict(
    num_workers=4,
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        ignore_keys=['identities', 'num_probes', 'num_distractors',
                     'set_name', 'num_templates', 'num_images'],
        datasets=[{{_base_.ijb_datasets.ijbc}}, {{_base_.ijb_datasets.ijbb}},
                  {{_base_.val_dataloader.dataset}},
                  dict(type='IdentificationDataset',
                       data_root='data/megaface',
                       probe_list='facescrub_probe.txt',
                       distractor_list='megaface_distractors.txt',
                       set_name='megaface',
                       pipeline=aligned_pipeline)]))
test_evaluator = [
    {{_base_.ijb_evaluators.ijbc}}, {{_base_.ijb_evaluators.ijbb}},
    dict(type='IdentificationMetric', set_names=['megaface'], fprs=(1e-6, )),
    dict(type='VerificationMetric'),
]

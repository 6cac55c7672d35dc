# Every set of GKD Table 5 in one test run:
#   python tools/test.py CONFIG CKPT --suite configs/_base_/datasets/paper_suite.py
#   tools/dist_test.sh CONFIG CKPT 8 --suite configs/_base_/datasets/paper_suite.py
# IJB-C, IJB-B (data/ijb/IJBC, data/ijb/IJBB), MegaFace (data/megaface) and
# the five .bin sets (data/ms1mv2); layouts in ijbc.py, ijbb.py, megaface.py
# and verification.py. tools/test.py prints and saves the summary row in the
# paper's column order. Add masked_verification.py's datasets for Table 7.
_base_ = ['./verification.py']
align_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True),
    dict(type='AlignFace', output_size=112),
    dict(type='PackFaceInputs'),
]
aligned_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True, expected_size=(112, 112)),
    dict(type='PackFaceInputs'),
]
ijb = {name: dict(type='IJBDataset', data_root=f'data/ijb/{name.upper()}',
                  name=name, pipeline=align_pipeline)
       for name in ('ijbc', 'ijbb')}
test_dataloader = dict(
    _delete_=True,
    batch_size=256,
    num_workers=4,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ConcatDataset',
        ignore_keys=['identities', 'num_probes', 'num_distractors',
                     'set_name', 'num_templates', 'num_images'],
        datasets=[ijb['ijbc'], ijb['ijbb'],
                  {{_base_.val_dataloader.dataset}},
                  dict(type='IdentificationDataset',
                       data_root='data/megaface',
                       probe_list='facescrub_probe.txt',
                       distractor_list='megaface_distractors.txt',
                       set_name='megaface',
                       pipeline=aligned_pipeline)]))
test_evaluator = [
    dict(type='IJBMetric', set_name='ijbc', data_root='data/ijb/IJBC',
         pair_file='meta/ijbc_template_pair_label.txt'),
    dict(type='IJBMetric', set_name='ijbb', data_root='data/ijb/IJBB',
         pair_file='meta/ijbb_template_pair_label.txt'),
    dict(type='IdentificationMetric', set_names=['megaface'], fprs=(1e-6, )),
    dict(type='VerificationMetric'),
]

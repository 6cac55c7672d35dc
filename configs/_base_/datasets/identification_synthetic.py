# 1:N identification (MegaFace challenge-1 protocol) on the small synthetic
# probe + distractor set: write it with
#   python tools/misc/make_synthetic_faces.py data/synthetic \
#       --identification-only
# (50 probe identities with 8-12 images each = 492 probes, 2,000
# distractors; aligned 112x112 jpgs + list files).
# Metric keys: synth_megaface/rank1, synth_megaface/tpr@fpr{1e-5,1e-4,1e-3}
# (%). With 492 probes x 2,000 distractors there are ~984k impostor pairs:
# FPR 1e-4 rests on ~98 false accepts, 1e-5 on ~10 (1e-6 would rest on one).
_base_ = './test_loader.py'
identification_data_root = 'data/synthetic/identification'
identification_pipeline = [
    dict(type='LoadFaceImage', to_rgb=True, expected_size=(112, 112)),
    dict(type='PackFaceInputs'),
]
test_dataloader = dict(
    batch_size=128,
    num_workers=1,
    dataset=dict(
        type='IdentificationDataset',
        data_root=identification_data_root,
        probe_list='probe_list.txt',
        distractor_list='distractor_list.txt',
        set_name='synth_megaface',
        pipeline=identification_pipeline))
test_evaluator = dict(type='IdentificationMetric', fprs=(1e-5, 1e-4, 1e-3))

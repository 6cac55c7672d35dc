# 1:N identification (MegaFace challenge-1 protocol) on the small synthetic
# probe + distractor set: write it with
#   python tools/misc/make_synthetic_faces.py data/synthetic \
#       --identification-only
# (20 probe identities with 4-8 images each, 400 distractor identities with
# 1-2 images each; aligned 112x112 jpgs + list files).
# Metric keys: synth_megaface/rank1, synth_megaface/tpr@fpr1e-6,
# synth_megaface/tpr@fpr1e-3 (%). With ~114 probes x ~590 distractors there
# are only ~67k impostor pairs, so at FPR 1e-6 the threshold is the highest
# impostor score (see mmfacekd/evaluation/functional/identification.py).
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
test_evaluator = dict(type='IdentificationMetric', fprs=(1e-6, 1e-3))

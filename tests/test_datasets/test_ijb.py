"""IJBDataset on a synthetic bundle in insightface's layout; AlignFace."""
import numpy as np
import pytest
import torch

from mmfacekd.datasets import IJBDataset
from mmfacekd.datasets.synthetic.ijb_bundle import write_ijb_bundle
from mmfacekd.datasets.transforms import AlignFace, estimate_similarity
from mmfacekd.evaluation import IJBMetric
from mmfacekd.registry import MODELS
from mmfacekd.structures.face_template import ARCFACE_TEMPLATE_112

PIPELINE = [dict(type='LoadFaceImage', to_rgb=True), dict(type='AlignFace'),
            dict(type='PackFaceInputs')]


@pytest.fixture(scope='module')
def bundle(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ijb'))
    summary = write_ijb_bundle(root, num_ids=4, impostor_ratio=3, seed=1)
    return root, summary


def test_similarity_recovers_a_known_map():
    a, s, t = np.deg2rad(17), 1.7, np.array([30.0, -4.0])
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    src = ARCFACE_TEMPLATE_112.astype(np.float64)
    dst = src @ rot.T + t
    m = estimate_similarity(dst, src)  # back onto the template
    np.testing.assert_allclose(dst @ m[:, :2].T + m[:, 2], src, atol=1e-6)


def test_align_moves_drawn_dots_onto_the_template():
    # dots drawn at the landmarks of a rotated/scaled/shifted face
    a, s, t = np.deg2rad(-12), 1.3, np.array([20.0, 35.0])
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    lms = ARCFACE_TEMPLATE_112 @ rot.T + t
    img = np.zeros((200, 200, 3), np.uint8)
    for x, y in lms:
        img[int(round(y)) - 1:int(round(y)) + 2,
            int(round(x)) - 1:int(round(x)) + 2] = 255
    out = AlignFace()(dict(img=img, landmarks=lms))
    assert out['img'].shape == (112, 112, 3)
    np.testing.assert_allclose(out['landmarks'], ARCFACE_TEMPLATE_112,
                               atol=1e-3)
    gray = out['img'][..., 0].astype(float)
    for x, y in ARCFACE_TEMPLATE_112:
        y0, x0 = int(round(y)), int(round(x))
        win = gray[y0 - 3:y0 + 4, x0 - 3:x0 + 4]
        yy, xx = np.mgrid[y0 - 3:y0 + 4, x0 - 3:x0 + 4]
        cy, cx = (win * yy).sum() / win.sum(), (win * xx).sum() / win.sum()
        assert abs(cx - x) < 1.0 and abs(cy - y) < 1.0


def test_dataset_items_and_alignment(bundle):
    root, summary = bundle
    ds = IJBDataset(root, name='ijbc', set_name='synth', pipeline=PIPELINE)
    assert len(ds) == summary['num_images']
    info = ds.get_data_info(0)
    assert info['eval_protocol'] == 'ijb' and info['landmarks'].shape == (5, 2)
    item = ds[3]
    meta = item['data_samples'].metainfo
    assert item['inputs'].shape == (3, 112, 112)
    assert {'template_id', 'media_id', 'face_score', 'sample_idx'} <= set(meta)


def test_bad_meta_files(bundle, tmp_path):
    root, _ = bundle
    import shutil
    bad = tmp_path / 'b'
    shutil.copytree(root, bad)
    pts = bad / 'meta' / 'ijbc_name_5pts_score.txt'
    lines = pts.read_text().splitlines()
    lines[2] = ' '.join(lines[2].split()[:-2])
    pts.write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match=r'line 3: expected 12 fields'):
        IJBDataset(str(bad))
    lines[2] = lines[2] + ' x 0.9'
    pts.write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match='line 3: non-numeric'):
        IJBDataset(str(bad))
    pts.write_text('\n'.join(lines[:-1]) + '\n')
    with pytest.raises(ValueError, match='has .* lines but'):
        IJBDataset(str(bad))


def test_end_to_end_with_a_model(bundle, tmp_path):
    root, summary = bundle
    ds = IJBDataset(root, name='ijbc', pipeline=PIPELINE)
    model = MODELS.build(dict(
        type='FaceRecognizer',
        data_preprocessor=dict(type='FaceDataPreprocessor'),
        backbone=dict(type='IResNet', depth=18, base_channels=8,
                      num_features=16),
        head=None)).eval()
    # the pair file comes from the dataset (each sample's meta)
    metric = IJBMetric(fprs=(1e-2, 1e-1), out_dir=str(tmp_path))
    with torch.no_grad():
        for start in range(0, len(ds), 64):
            items = [ds[i] for i in range(start, min(len(ds), start + 64))]
            batch = model.data_preprocessor(dict(
                inputs=[x['inputs'] for x in items],
                data_samples=[x['data_samples'] for x in items]))
            metric.process({}, model(**batch, mode='predict'))
    out = metric.compute_metrics(metric.results)
    assert {k for k in out if '_ci_' not in k} == {'ijbc/tpr@fpr1e-2',
                                                   'ijbc/tpr@fpr1e-1'}
    for key in ('ijbc/tpr@fpr1e-2', 'ijbc/tpr@fpr1e-1'):
        assert out[f'{key}_ci_low'] <= out[key] <= out[f'{key}_ci_high']
    assert (tmp_path / 'ijbc_roc.png').is_file()

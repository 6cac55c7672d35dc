"""IJB protocol: pooling by hand, metric + errors (the ROC / TPR@FPR
rule: tests/test_evaluation/test_functional/test_ijb_roc.py)."""
import json
import os

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement
from spawn_utils import run_on_gloo

from mmfacekd.evaluation import IJBMetric
from mmfacekd.evaluation.functional import score_pairs, template_pooling


def test_template_pooling_by_hand():
    f = np.array([[3, 4], [1, 0], [0, 2], [5, 0], [0, 1]], np.float32)
    score = np.array([1.0, 0.5, 0.5, 2.0, 1.0])
    tids = np.array([7, 7, 7, 3, 3])
    mids = np.array([0, 1, 1, 5, 6])
    templates, feats = template_pooling(f, score, tids, mids)
    # template 3: media 5 -> [1,0]*2, media 6 -> [0,1]*1; sum [2,1]
    # template 7: media 0 -> [.6,.8]; media 1 -> mean([.5,0],[0,.5])
    t3 = np.array([2.0, 1.0]) / np.sqrt(5)
    t7 = np.array([0.6 + 0.25, 0.8 + 0.25])
    t7 /= np.linalg.norm(t7)
    assert list(templates) == [3, 7]
    np.testing.assert_allclose(feats, [t3, t7], rtol=1e-6)
    # ablation switches: no normalization, no detector score
    _, raw = template_pooling(f, score, tids, mids, use_norm_score=False,
                              use_detector_score=False)
    t7raw = np.array([3 + 0.5, 4 + 1.0])
    np.testing.assert_allclose(raw[1], t7raw / np.linalg.norm(t7raw),
                               rtol=1e-6)


def test_score_pairs_chunks_and_unknown_template():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(4, 3)).astype(np.float32)
    templates = np.array([2, 5, 8, 9])
    t1, t2 = np.array([2, 5, 9]), np.array([8, 8, 2])
    ref = [feats[0] @ feats[2], feats[1] @ feats[2], feats[3] @ feats[0]]
    np.testing.assert_allclose(score_pairs(templates, feats, t1, t2, block=2),
                               ref, rtol=1e-6)
    with pytest.raises(KeyError):
        score_pairs(templates, feats, np.array([2, 3]), np.array([5, 5]))


def make_samples(n_ids=6, per=4, dim=8, seed=0, separable=True):
    """Images of templates: one template = 2 images (2 media)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_ids, dim)) * (10 if separable else 0.3)
    samples, tid = [], 0
    pairs = []
    for i in range(n_ids):
        mine = []
        for _ in range(per):
            for m in range(2):
                ds = BaseDataElement(metainfo=dict(
                    sample_idx=len(samples), set_name='ijbc',
                    eval_protocol='ijb', face_score=0.9, template_id=tid,
                    media_id=2 * tid + m))
                ds.pred_embedding = torch.tensor(
                    centers[i] + rng.normal(size=dim), dtype=torch.float32)
                samples.append(ds)
            mine.append(tid)
            tid += 1
        pairs += [(a, b, 1) for a in mine for b in mine if a < b]
    for a in range(tid):
        for b in range(a + 1, tid):
            if a // per != b // per:
                pairs.append((a, b, 0))
    return samples, pairs


def write_pairs(path, pairs):
    with open(path, 'w') as f:
        f.write('\n'.join(f'{a} {b} {y}' for a, b, y in pairs) + '\n')


def test_separable_templates_give_full_tpr(tmp_path):
    samples, pairs = make_samples()
    write_pairs(tmp_path / 'pairs.txt', pairs)
    metric = IJBMetric(str(tmp_path / 'pairs.txt'), out_dir=str(tmp_path))
    other = BaseDataElement(metainfo=dict(sample_idx=0, set_name='lfw'))
    metric.process({}, samples[::-1] + [other])  # order does not matter
    out = metric.compute_metrics(metric.results)
    keys = {f'ijbc/tpr@fpr1e-{k}' for k in range(1, 7)}
    assert set(out) == keys | {f'{k}_ci_{s}' for k in keys
                               for s in ('low', 'high')}
    assert all(v == 100.0 for v in out.values())  # CIs of a perfect ROC too
    with open(tmp_path / 'ijbc_ijb.json') as f:
        saved = json.load(f)
    assert saved['templates'] == 24 and saved['genuine_pairs'] == 36
    assert os.path.getsize(tmp_path / 'ijbc_roc.png') > 1000


def test_bad_pair_files(tmp_path):
    samples, pairs = make_samples(n_ids=2, per=2)
    metric = IJBMetric(str(tmp_path / 'p.txt'))
    metric.process({}, samples)
    write_pairs(tmp_path / 'p.txt', pairs + [(0, 99, 0)])
    with pytest.raises(ValueError, match=r'p.txt, line 7: pair \(0, 99\)'):
        metric.compute_metrics(metric.results)
    with open(tmp_path / 'p.txt', 'w') as f:
        f.write('0 1 1\n0 2\n')
    with pytest.raises(ValueError, match='line 2'):
        metric.compute_metrics(metric.results)
    with pytest.raises(ValueError, match='exactly 0..N-1'):
        metric.compute_metrics(metric.results[1:])


def _collect(rank, world, pair_file):
    samples, _ = make_samples(separable=False, seed=3)
    metric = IJBMetric(pair_file)
    # interleaved shards, like a DistributedSampler
    metric.process({}, samples[rank::world])
    return metric.evaluate(len(samples))


def test_distributed_collection_matches_single_process(tmp_path):
    samples, pairs = make_samples(separable=False, seed=3)
    write_pairs(tmp_path / 'p.txt', pairs)
    single = IJBMetric(str(tmp_path / 'p.txt'))
    single.process({}, samples)
    ref = single.compute_metrics(single.results)
    assert min(ref.values()) < 100  # a non-trivial case
    ranks = run_on_gloo(_collect, 2, tmp_path, (str(tmp_path / 'p.txt'), ))
    assert ranks[0] == ref


def test_pair_file_from_the_dataset_and_deprecated_argument(tmp_path):
    samples, pairs = make_samples(separable=False, seed=4)
    write_pairs(tmp_path / 'p.txt', pairs)
    for s in samples:  # what IJBDataset.prepare_data puts in the meta
        s.set_metainfo(dict(pair_file=str(tmp_path / 'p.txt')))
    metric = IJBMetric(fprs=(1e-2, 1e-1), scores_dir=str(tmp_path / 'sc'))
    metric.process({}, samples)
    out = metric.compute_metrics(metric.results)
    with pytest.warns(DeprecationWarning, match='pair_file'):
        old = IJBMetric(str(tmp_path / 'p.txt'), fprs=(1e-2, 1e-1),
                        dump_scores=False)
    old.process({}, samples)
    assert old.compute_metrics(old.results) == out
    for f in ('1e-2', '1e-1'):
        assert out[f'ijbc/tpr@fpr{f}_ci_low'] <= out[f'ijbc/tpr@fpr{f}'] \
            <= out[f'ijbc/tpr@fpr{f}_ci_high']
    # the dumped scores: a paired comparison with itself is exactly zero
    from mmfacekd.evaluation import paired_comparison
    z = np.load(tmp_path / 'sc' / 'ijbc.npz')
    assert str(z['protocol']) == 'ijb' and len(z['scores']) == len(pairs)
    d = paired_comparison(str(tmp_path / 'sc'), str(tmp_path / 'sc'),
                          n_bootstrap=50)
    assert d == {'ijbc/tpr@fpr1e-4': (0.0, 0.0, 0.0)}
    no_file = IJBMetric()
    no_file.process({}, make_samples(separable=False, seed=4)[0])
    with pytest.raises(ValueError, match='no pair file'):
        no_file.compute_metrics(no_file.results)


def test_dataset_puts_pair_file_in_sample_meta(tmp_path):
    from mmfacekd.datasets import IJBDataset
    meta = tmp_path / 'meta'
    meta.mkdir()
    (meta / 'ijbc_name_5pts_score.txt').write_text(
        'a.jpg ' + ' '.join(['50'] * 10) + ' 0.9\n')
    (meta / 'ijbc_face_tid_mid.txt').write_text('a.jpg 1 1\n')
    (meta / 'ijbc_template_pair_label.txt').write_text('1 1 1\n')
    ds = IJBDataset(str(tmp_path), check_files=False,
                    pipeline=[dict(type='PackFaceInputs')])
    ds.pipeline.transforms.insert(0, lambda r: dict(
        r, img=np.zeros((4, 4, 3), np.uint8)))
    assert ds[0]['data_samples'].pair_file == str(
        meta / 'ijbc_template_pair_label.txt')

"""IJB protocol: pooling by hand, ROC vs brute force, metric + errors."""
import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.structures import BaseDataElement

from mmfacekd.evaluation import IJBMetric
from mmfacekd.evaluation.functional import (roc_curve, score_pairs,
                                            template_pooling, tpr_at_fpr)


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


def brute_tpr(scores, labels, target):
    """Literal protocol: ROC point per distinct threshold, nearest FPR,
    highest TPR on ties."""
    pos, neg = labels.sum(), (~labels).sum()
    pts = [(0.0, 0.0)]
    for t in sorted(set(scores), reverse=True):
        acc = scores >= t
        pts.append(((acc & ~labels).sum() / neg, (acc & labels).sum() / pos))
    best = min(abs(p[0] - target) for p in pts)
    return max(p[1] for p in pts if abs(p[0] - target) == best)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_roc_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.3
    # rounded scores create ties, including mixed genuine/impostor ties
    scores = np.round(rng.normal(labels * 1.0, 1.0), 1)
    fpr, tpr, _ = roc_curve(scores, labels)
    for target in (1e-3, 1e-2, 0.05, 0.1, 0.3):
        assert tpr_at_fpr(fpr, tpr, [target])[target] == pytest.approx(
            brute_tpr(scores, labels, target))


def test_small_roc_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([1, 0, 1, 0, 0], bool)
    fpr, tpr, _ = roc_curve(scores, labels)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, .5, .5, 1, 1, 1])
    # nearest FPR to 0.3 is 1/3: two points, the higher TPR wins
    assert tpr_at_fpr(fpr, tpr, [0.3])[0.3] == 1.0
    assert tpr_at_fpr(fpr, tpr, [1e-6])[1e-6] == 0.5


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
    assert set(out) == {f'ijbc/tpr@fpr1e-{k}' for k in range(1, 7)}
    assert all(v == 100.0 for v in out.values())
    saved = json.load(open(tmp_path / 'ijbc_ijb.json'))
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


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _worker(rank, world, port, pair_file, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        samples, _ = make_samples(separable=False, seed=3)
        metric = IJBMetric(pair_file)
        # interleaved shards, like a DistributedSampler
        metric.process({}, samples[rank::world])
        res = metric.evaluate(len(samples))
        if rank == 0:
            torch.save(res, out)
    finally:
        dist.destroy_process_group()


def test_distributed_collection_matches_single_process(tmp_path):
    samples, pairs = make_samples(separable=False, seed=3)
    write_pairs(tmp_path / 'p.txt', pairs)
    single = IJBMetric(str(tmp_path / 'p.txt'))
    single.process({}, samples)
    ref = single.compute_metrics(single.results)
    assert min(ref.values()) < 100  # a non-trivial case
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / 'p.txt'),
                            str(tmp_path / 'r.pth')), nprocs=2)
    assert torch.load(tmp_path / 'r.pth') == ref

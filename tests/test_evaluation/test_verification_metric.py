"""VerificationMetric vs the LFW protocol written out literally, loop by
loop."""
import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement

from mmfacekd.evaluation import (
    VerificationMetric,
    contiguous_folds,
)


def reference_protocol(emb_sum, issame):
    """insightface's procedure, literally: python loops, KFold-style folds."""
    emb = emb_sum / np.linalg.norm(emb_sum, axis=1, keepdims=True)
    e1, e2 = emb[0::2], emb[1::2]
    dist = np.sum(np.square(e1 - e2), 1)
    thresholds = np.arange(0, 4, 0.01)
    n = len(issame)
    fold_sizes = [n // 10 + (1 if i < n % 10 else 0) for i in range(10)]
    accs, start = [], 0
    for size in fold_sizes:
        test = list(range(start, start + size))
        train = [i for i in range(n) if i not in test]
        start += size
        best_acc, best_t = -1, None
        for t in thresholds:
            correct = sum((dist[i] < t) == issame[i] for i in train)
            acc = float(correct) / len(train)
            if acc > best_acc:  # strict: first best threshold wins
                best_acc, best_t = acc, t
        correct = sum((dist[i] < best_t) == issame[i] for i in test)
        accs.append(float(correct) / len(test))
    return np.mean(accs), np.std(accs)


def crafted(n_pairs, seed, dim=16, noise=0.9):
    rng = np.random.default_rng(seed)
    issame = rng.random(n_pairs) < 0.5
    emb = np.zeros((2 * n_pairs, dim), np.float32)
    for i in range(n_pairs):
        a = rng.normal(size=dim)
        b = a if issame[i] else rng.normal(size=dim)
        emb[2 * i] = a + noise * rng.normal(size=dim)
        emb[2 * i + 1] = b + noise * rng.normal(size=dim)
    return emb.astype(np.float32), issame


def run_metric(emb, issame, name='lfw', order=None):
    metric = VerificationMetric()
    order = range(len(emb)) if order is None else order
    samples = []
    for i in order:
        ds = BaseDataElement(metainfo=dict(set_name=name, sample_idx=i,
                                           pair_label=bool(issame[i // 2])))
        ds.pred_embedding = torch.from_numpy(emb[i])
        ds.xnorm = torch.tensor(float(np.linalg.norm(emb[i])))
        samples.append(ds)
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


@pytest.mark.parametrize('n_pairs,seed', [(103, 0), (120, 1), (57, 2)])
def test_matches_reference_to_last_digit(n_pairs, seed):
    emb, issame = crafted(n_pairs, seed)
    mean, std = reference_protocol(emb, issame)
    out = run_metric(emb, issame)
    assert out['lfw/accuracy'] == mean * 100
    assert out['lfw/accuracy_std'] == std * 100
    assert 50 < out['lfw/accuracy'] < 100  # a non-trivial case


def test_order_and_multiple_sets_independent_of_batches():
    emb1, same1 = crafted(60, 3)
    emb2, same2 = crafted(40, 4, noise=0.2)
    perm = np.random.default_rng(0).permutation(len(emb1))
    a = run_metric(emb1, same1, 'lfw', order=perm)
    b = run_metric(emb1, same1, 'lfw')
    assert a == b
    metric = VerificationMetric()
    for emb, same, name in ((emb1, same1, 'lfw'), (emb2, same2, 'agedb_30')):
        samples = []
        for i in range(len(emb)):
            ds = BaseDataElement(metainfo=dict(set_name=name, sample_idx=i,
                                               pair_label=bool(same[i // 2])))
            ds.pred_embedding = torch.from_numpy(emb[i])
            ds.xnorm = torch.tensor(1.0)
            samples.append(ds)
        metric.process({}, samples)
    out = metric.compute_metrics(metric.results)
    assert out['lfw/accuracy'] == b['lfw/accuracy']
    assert out['agedb_30/accuracy'] > out['lfw/accuracy']
    assert out['mean/accuracy'] == pytest.approx(
        (out['lfw/accuracy'] + out['agedb_30/accuracy']) / 2)


def test_perfect_separation_and_xnorm():
    emb, issame = crafted(50, 5, noise=0.0)
    out = run_metric(emb, issame)
    assert out['lfw/accuracy'] == 100.0 and out['lfw/accuracy_std'] == 0.0
    assert out['lfw/tar@far1e-3'] == 100.0
    assert out['lfw/xnorm'] == pytest.approx(
        np.mean(np.linalg.norm(emb, axis=1)), rel=1e-6)


def test_missing_image_is_an_error():
    emb, issame = crafted(10, 6)
    with pytest.raises(ValueError, match='exactly 0..2P-1'):
        run_metric(emb, issame, order=range(19))


def test_folds_match_kfold_sizes():
    folds = contiguous_folds(6003)
    assert [len(f) for f in folds] == [601] * 3 + [600] * 7
    assert np.array_equal(np.concatenate(folds), np.arange(6003))


def test_other_protocols_of_a_mixed_test_set_are_ignored():
    emb, issame = crafted(20, 7)
    ref = run_metric(emb, issame)
    metric = VerificationMetric()
    samples = []
    for i in range(len(emb)):
        ds = BaseDataElement(metainfo=dict(
            set_name='lfw', sample_idx=i, pair_label=bool(issame[i // 2]),
            eval_protocol='verification'))
        ds.pred_embedding = torch.from_numpy(emb[i])
        ds.xnorm = torch.tensor(1.0)
        samples.append(ds)
        # an IJB image with a clashing set name and index is not a pair image
        other = BaseDataElement(metainfo=dict(
            set_name='lfw', sample_idx=i, eval_protocol='ijb'))
        other.pred_embedding = torch.zeros(emb.shape[1])
        other.xnorm = torch.tensor(0.0)
        samples.append(other)
    metric.process({}, samples)
    out = metric.compute_metrics(metric.results)
    assert out['lfw/accuracy'] == ref['lfw/accuracy']
    assert len(metric.results) == len(emb)


def test_mean_over_chosen_sets():
    emb, issame = crafted(20, 8)
    metric = VerificationMetric(mean_sets=['a'])
    for name in ('a', 'a_mm'):
        for i in range(len(emb)):
            ds = BaseDataElement(metainfo=dict(
                set_name=name, sample_idx=i, pair_label=bool(issame[i // 2])))
            ds.pred_embedding = torch.from_numpy(
                emb[i] if name == 'a' or i % 2 == 0 else np.roll(emb[i], 3))
            ds.xnorm = torch.tensor(1.0)
            metric.process({}, [ds])
    out = metric.compute_metrics(metric.results)
    assert out['mean/accuracy'] == out['a/accuracy']
    assert out['a_mm/accuracy'] != out['a/accuracy']
    with pytest.raises(ValueError, match='mean_sets'):
        VerificationMetric(mean_sets=['a', 'b']).compute_metrics(
            metric.results)


def test_bootstrap_interval_keys_and_score_dump(tmp_path):
    from mmfacekd.evaluation import paired_comparison
    emb, issame = crafted(300, 7, noise=1.2)
    samples = []
    for i in range(len(emb)):
        ds = BaseDataElement(metainfo=dict(set_name='lfw', sample_idx=i,
                                           pair_label=bool(issame[i // 2])))
        ds.pred_embedding = torch.from_numpy(emb[i])
        ds.xnorm = torch.tensor(1.0)
        samples.append(ds)

    def run(**kw):
        metric = VerificationMetric(**kw)
        metric.process({}, samples)
        return metric.compute_metrics(metric.results)

    out = run(n_bootstrap=300, scores_dir=str(tmp_path / 'a'))
    assert out['lfw/accuracy_ci_low'] <= out['lfw/accuracy'] <= \
        out['lfw/accuracy_ci_high']
    assert out['lfw/accuracy_ci_low'] < out['lfw/accuracy_ci_high']
    assert (out['mean/accuracy_ci_low'], out['mean/accuracy_ci_high']) == (
        out['lfw/accuracy_ci_low'], out['lfw/accuracy_ci_high'])
    # deterministic for the seed; another seed moves the interval
    again = run(n_bootstrap=300, scores_dir=str(tmp_path / 'b'))
    assert again == out
    other = run(n_bootstrap=300, bootstrap_seed=1, dump_scores=False)
    assert other['lfw/accuracy'] == out['lfw/accuracy']
    assert other['lfw/accuracy_ci_low'] != out['lfw/accuracy_ci_low'] or \
        other['lfw/accuracy_ci_high'] != out['lfw/accuracy_ci_high']
    assert not (tmp_path / 'c').exists()
    assert 'lfw/accuracy_ci_low' not in run(ci_level=None, dump_scores=False)
    z = np.load(tmp_path / 'a' / 'lfw.npz')
    assert z['dist'].shape == (300, ) and z['issame'].sum() == issame.sum()
    d = paired_comparison(str(tmp_path / 'a'), str(tmp_path / 'b'),
                          n_bootstrap=100)
    assert d == {'lfw/accuracy': (0.0, 0.0, 0.0),
                 'mean/accuracy': (0.0, 0.0, 0.0)}

"""MegaFace-style identification: chunked top-k math vs brute force."""
import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement

from mmfacekd.evaluation.functional import (
    fpr_key,
    identification_metrics,
    num_false_accepts_allowed,
    threshold_at_fpr,
)
from mmfacekd.evaluation.metrics import IdentificationMetric


def brute_force(probe, ids, dis, fprs, ranks=(1, )):
    """Everything materialized, plain loops, float64."""
    p = probe / np.linalg.norm(probe, axis=1, keepdims=True)
    d = dis / np.linalg.norm(dis, axis=1, keepdims=True)
    pp, pd = p @ p.T, p @ d.T
    out = {}
    for r in ranks:
        ok = n = 0
        for i in range(len(p)):
            for j in range(len(p)):
                if i != j and ids[i] == ids[j]:
                    n += 1
                    beaten_by = int(np.sum(pd[i] >= pp[i, j]))
                    ok += beaten_by < r
        out[f'rank{r}'] = ok / n
    genuine = np.array([pp[i, j] for i in range(len(p))
                        for j in range(i + 1, len(p)) if ids[i] == ids[j]])
    imp = np.sort(pd.ravel())[::-1]
    for f in fprs:
        m = int(np.floor(f * imp.size + 1e-9))
        t = imp[m] if m < imp.size else -np.inf
        out[f'tpr@fpr{fpr_key(f)}'] = float(np.mean(genuine > t))
        out[f'threshold@fpr{fpr_key(f)}'] = t
    return out


def random_case(seed, n_ids=9, n_dis=300, dim=12, noise=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    ids = np.repeat(np.arange(n_ids), rng.integers(2, 6, n_ids))
    ids = ids[rng.permutation(len(ids))]
    probe = centres[ids] + noise * rng.normal(size=(len(ids), dim))
    dis = rng.normal(size=(n_dis, dim))
    return probe.astype(np.float32), ids, dis.astype(np.float32)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_matches_brute_force(seed):
    probe, ids, dis = random_case(seed)
    fprs = (1e-4, 1e-3, 1e-2, 0.1)
    ref = brute_force(probe.astype(np.float64), ids, dis.astype(np.float64),
                      fprs, ranks=(1, 5))
    out = identification_metrics(probe, ids, dis, fprs=fprs, ranks=(1, 5),
                                 chunk=64)
    for k, v in ref.items():
        assert out[k] == pytest.approx(v, abs=1e-6), k
    assert 0.0 < out['rank1'] < out['rank5'] < 1.0  # non-trivial
    assert out['num_rank_pairs'] == 2 * out['num_genuine']
    assert out['num_impostors'] == len(probe) * len(dis)


def test_chunk_size_does_not_change_results():
    probe, ids, dis = random_case(3, n_dis=257)
    kw = dict(fprs=(1e-6, 1e-3, 3e-2), ranks=(1, 3, 10))
    ref = identification_metrics(probe, ids, dis, chunk=10**6, **kw)
    for chunk in (1, 7, 64, 256, 257):
        out = identification_metrics(probe, ids, dis, chunk=chunk, **kw)
        assert out.keys() == ref.keys()
        for k, v in ref.items():
            if k.startswith('threshold'):  # float32 BLAS blocking round-off
                assert out[k] == pytest.approx(v, abs=1e-6), k
            else:  # rates and counts are identical
                assert out[k] == v, k


@pytest.mark.parametrize('fpr', [1e-5, 1e-3, 0.01, 0.25, 1.0])
def test_topk_threshold_equals_full_sort_with_ties(fpr):
    # coarsely quantized features: many impostor scores tie exactly
    rng = np.random.default_rng(4)
    probe = np.round(rng.normal(size=(40, 4))).astype(np.float32)
    probe[probe.sum(1) == 0, 0] = 1.0
    ids = np.arange(40) // 4
    dis = np.round(rng.normal(size=(500, 4))).astype(np.float32)
    dis[np.abs(dis).sum(1) == 0, 0] = 1.0
    out = identification_metrics(probe, ids, dis, fprs=(fpr, ), chunk=33,
                                 normalize=False)
    imp = (probe @ dis.T).ravel()
    full = np.sort(imp)[::-1]
    m = num_false_accepts_allowed(fpr, imp.size)
    t = out[f'threshold@fpr{fpr_key(fpr)}']
    if m < imp.size:
        assert t == full[m]
        # definition: at most m impostors above t, more than m at or above
        assert (imp > t).sum() <= m < (imp >= t).sum()
    assert out[f'fpr@fpr{fpr_key(fpr)}'] == (imp > t).sum() / imp.size
    assert out[f'fpr@fpr{fpr_key(fpr)}'] <= fpr


def test_threshold_helper_and_exact_fpr_count():
    assert num_false_accepts_allowed(1e-6, 3530 * 1_000_000) == 3530
    assert num_false_accepts_allowed(1e-3, 999) == 0
    scores = torch.tensor([0.9, 0.8, 0.8, 0.7, 0.1])
    assert threshold_at_fpr(scores, 0.2, 5) == (pytest.approx(0.8), 0.2)
    t, achieved = threshold_at_fpr(scores, 0.4, 5)  # tie at the cut
    assert t == pytest.approx(0.8) and achieved == 0.2
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        num_false_accepts_allowed(0.0, 10)


def test_fpr_key_spelling():
    assert fpr_key(1e-6) == '1e-6' and fpr_key(1e-3) == '1e-3'
    assert fpr_key(2.5e-4) == '2.5e-4' and fpr_key(0.1) == '1e-1'
    assert fpr_key(1e-10) == '1e-10'


def unit(*v, dim=8):
    x = np.zeros(dim, np.float32)
    x[:len(v)] = v
    return x


def test_crafted_failures_and_ties():
    # identity 0: e0 and (0.6, 0.8); identity 1: e4 and e5-ish
    probe = np.stack([unit(1), unit(0.6, 0.8), unit(0, 0, 0, 0, 1),
                      unit(0, 0, 0, 0, 0.8, 0.6)])
    ids = np.array([0, 0, 1, 1])
    # d0 ties with the genuine score of probe 0 (0.6 == 0.6): a failure;
    # probe 1 sees d0 at 0.36 < 0.6: a success; identity 1 succeeds.
    dis = np.stack([unit(0.6, 0, 0.8), unit(0, 0, 0, 0, 0, 0, 0, 1)])
    out = identification_metrics(probe, ids, dis, fprs=(0.1, ))
    assert out['rank1'] == 0.75
    # d1 beats identity 1's genuine score for probe 3 -> one more failure
    dis2 = np.concatenate([dis, unit(0, 0, 0, 0, 0.6, 0.8)[None]])
    assert identification_metrics(probe, ids, dis2)['rank1'] == 0.5


def test_errors():
    probe, ids, dis = random_case(5)
    with pytest.raises(ValueError, match='no identity has two'):
        identification_metrics(probe[:3], [0, 1, 2], dis)
    with pytest.raises(ValueError, match='distractor set is empty'):
        identification_metrics(probe, ids, dis[:0])
    with pytest.raises(ValueError, match='one label per probe'):
        identification_metrics(probe, ids[:-1], dis)
    with pytest.raises(ValueError, match='highest impostor scores'):
        from mmfacekd.evaluation.functional import identification as m
        old, m.MAX_TOPK = m.MAX_TOPK, 10
        try:
            identification_metrics(probe, ids, dis, fprs=(0.5, ))
        finally:
            m.MAX_TOPK = old


# --------------------------------------------------------------------------
# IdentificationMetric
# --------------------------------------------------------------------------


def samples_of(probe, ids, dis, set_name='megaface', teacher=False):
    out = []
    items = [('probe', int(i), f) for i, f in zip(ids, probe)] + \
        [('distractor', -1, f) for f in dis]
    for k, (role, ident, feat) in enumerate(items):
        ds = BaseDataElement(metainfo=dict(
            set_name=set_name, sample_idx=k, role=role, identity=ident,
            eval_protocol='identification'))
        ds.pred_embedding = torch.from_numpy(feat * 3.0)  # un-normalized
        ds.xnorm = torch.tensor(3.0)
        if teacher:
            ds.teacher_embedding = torch.from_numpy(-feat)
        out.append(ds)
    return out


def run_metric(samples, **kw):
    metric = IdentificationMetric(**kw)
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_metric_separable_and_keys():
    rng = np.random.default_rng(6)
    basis = np.linalg.qr(rng.normal(size=(32, 32)))[0].astype(np.float32)
    ids = np.repeat(np.arange(5), 3)
    probe = basis[ids] + 0.01 * rng.normal(size=(15, 32)).astype(np.float32)
    dis = basis[10:30]
    out = run_metric(samples_of(probe, ids, dis), fprs=(1e-6, 1e-2))
    keys = ('megaface/rank1', 'megaface/tpr@fpr1e-6', 'megaface/tpr@fpr1e-2')
    # a perfect model: the intervals are [100, 100] too
    assert out == {f'{k}{s}': 100.0 for k in keys
                   for s in ('', '_ci_low', '_ci_high')}


def test_metric_matches_functional_any_order_and_teacher():
    probe, ids, dis = random_case(7)
    samples = samples_of(probe, ids, dis, teacher=True)
    perm = np.random.default_rng(0).permutation(len(samples))
    out = run_metric([samples[i] for i in perm], ranks=(1, 5))
    ref = identification_metrics(probe, ids, dis, ranks=(1, 5))
    assert out['megaface/rank1'] == pytest.approx(ref['rank1'] * 100)
    assert out['megaface/rank5'] == pytest.approx(ref['rank5'] * 100)
    assert out['megaface/tpr@fpr1e-6'] == pytest.approx(
        ref['tpr@fpr1e-6'] * 100)
    assert {k for k in out if '_ci_' not in k} == {
                        'megaface/rank1', 'megaface/rank5',
                        'megaface/tpr@fpr1e-6', 'teacher/megaface/rank1',
                        'teacher/megaface/rank5',
                        'teacher/megaface/tpr@fpr1e-6'}


def test_metric_filters_protocols_and_sets():
    probe, ids, dis = random_case(8)
    a = samples_of(probe, ids, dis, 'megaface')
    b = samples_of(probe[::-1].copy(), ids, dis, 'other')
    ver = BaseDataElement(metainfo=dict(set_name='lfw', sample_idx=0,
                                        pair_label=True))
    ver.pred_embedding = torch.ones(12)
    both = run_metric(a + b + [ver])
    assert {k for k in both if '_ci_' not in k} == {
                         'megaface/rank1', 'megaface/tpr@fpr1e-6',
                         'other/rank1', 'other/tpr@fpr1e-6'}
    only = run_metric(a + b + [ver], set_names='megaface')
    assert only == {k: v for k, v in both.items() if k.startswith('mega')}


def test_metric_checks_every_image_once():
    probe, ids, dis = random_case(9)
    samples = samples_of(probe, ids, dis)
    with pytest.raises(ValueError, match='exactly once'):
        run_metric(samples[:-2] + samples[-1:])
    with pytest.raises(ValueError, match=r'duplicated \[3\]'):
        run_metric(samples[:4] + samples[3:4] + samples[5:])
    no_dis = [s for s in samples if s.role == 'probe']
    with pytest.raises(ValueError, match='both are needed'):
        run_metric(no_dis)


def test_intervals_and_paired_comparison_of_dumps(tmp_path):
    from mmfacekd.evaluation import paired_comparison
    probe, ids, dis = random_case(11, noise=1.3)
    out = run_metric(samples_of(probe, ids, dis), fprs=(1e-2, ),
                     n_bootstrap=200, scores_dir=str(tmp_path / 'a'))
    for k in ('megaface/rank1', 'megaface/tpr@fpr1e-2'):
        assert out[f'{k}_ci_low'] <= out[k] <= out[f'{k}_ci_high']
        assert out[f'{k}_ci_low'] < out[f'{k}_ci_high']
    z = np.load(tmp_path / 'a' / 'megaface.npz')
    assert np.mean(z['pair_rank'] == 1) * 100 == pytest.approx(
        out['megaface/rank1'])
    # a worse model on the same probes: noisier features
    rng = np.random.default_rng(0)
    worse = probe + 1.5 * rng.normal(size=probe.shape).astype(np.float32)
    bad = run_metric(samples_of(worse, ids, dis), fprs=(1e-2, ),
                     scores_dir=str(tmp_path / 'b'), ci_level=None)
    d = paired_comparison(str(tmp_path / 'b'), str(tmp_path / 'a'),
                          n_bootstrap=200)
    delta, lo, hi = d['megaface/rank1']
    assert delta == pytest.approx(bad['megaface/rank1'] -
                                  out['megaface/rank1'])
    assert lo <= delta <= hi
    assert paired_comparison(str(tmp_path / 'a'), str(tmp_path / 'a'),
                             n_bootstrap=50)['megaface/rank1'] == (0, 0, 0)

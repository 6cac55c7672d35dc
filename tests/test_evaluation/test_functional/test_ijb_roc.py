"""IJB ROC + TPR@FPR: identical to scikit-learn's ``roc_curve`` (default
``drop_intermediate=True``) followed by insightface's nearest-FPR rule.

scikit-learn is a test-only dependency (requirements/tests.txt); the
reference rule below is insightface ``eval_ijbc.py``'s, written literally:
``fpr, tpr, _ = roc_curve(label, score)``, flip both arrays, then
``min(zip(abs(fpr - x), range(len(fpr))))``.
"""
import warnings

import numpy as np
import pytest

from mmfacekd.evaluation.functional import DEFAULT_FPRS, roc_curve, tpr_at_fpr

sk_metrics = pytest.importorskip('sklearn.metrics')

N_RANDOM_CASES = 240


def insightface_tprs(labels, scores, targets):
    """insightface eval_ijbc.py, literally (sklearn ROC, flip, min-zip)."""
    fpr, tpr, _ = sk_metrics.roc_curve(labels, scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    out = {}
    for x in targets:
        _, min_index = min(list(zip(abs(fpr - x), range(len(fpr)))))
        out[x] = float(tpr[min_index])
    return out


def random_case(rng, i):
    """Scores with heavy ties and labels of varied dtype / balance."""
    n = int(rng.choice([2, 3, 5, 10, 40, 200, 1000]))
    kind = i % 8
    if kind == 0:  # all scores equal
        scores = np.full(n, rng.normal())
    elif kind == 1:  # a few integer levels
        scores = rng.integers(0, int(rng.integers(2, 6)), n)
    elif kind == 2:  # float32 / float16 rounded to 1 decimal
        scores = np.round(rng.normal(size=n), 1).astype(
            np.float32 if i % 16 < 8 else np.float16)
    elif kind == 3:  # two levels
        scores = rng.choice([0.25, 0.75], n)
    else:  # rounded to 0-2 decimals, shifted for genuine below
        scores = rng.normal(size=n)
    p_pos = rng.choice([0.02, 0.1, 0.3, 0.5, 0.9])
    y = rng.random(n) < p_pos
    y[rng.integers(n)] = True  # both classes present
    y[(np.flatnonzero(y)[0] + 1) % n if y.all() else
      np.flatnonzero(~y)[0]] = False
    if kind >= 4:
        scores = np.round(scores + y * rng.uniform(0, 2),
                          int(rng.integers(0, 3)))
    label_kind = i % 4
    if label_kind == 0:
        labels = y.astype(np.int64)
    elif label_kind == 1:
        labels = y.astype(np.float32)
    elif label_kind == 2:
        labels = y
    else:
        labels = np.where(y, 1, -1)
    return scores, labels


def targets_for(fpr):
    """The protocol's targets, plus ones that create distance ties."""
    pts = np.unique(fpr)
    mids = (pts[1:] + pts[:-1]) / 2
    return (list(DEFAULT_FPRS) + [0.05, 0.3, 0.5, 1.0] + list(pts[:6]) +
            list(mids[:6]))


@pytest.mark.parametrize('block', range(8))
def test_roc_and_tpr_equal_sklearn_insightface(block):
    """>= 200 random tied cases: arrays bit for bit, TPRs equal."""
    per_block = N_RANDOM_CASES // 8
    for i in range(block * per_block, (block + 1) * per_block):
        rng = np.random.default_rng(1000 + i)
        scores, labels = random_case(rng, i)
        for drop in (True, False):
            ref = sk_metrics.roc_curve(labels, scores,
                                       drop_intermediate=drop)
            ours = roc_curve(scores, labels, drop_intermediate=drop)
            for name, r, o in zip(('fpr', 'tpr', 'thresholds'), ref, ours):
                assert o.dtype == np.float64, (i, drop, name)
                np.testing.assert_array_equal(o, r, err_msg=f'case {i} '
                                              f'drop={drop} {name}')
        fpr, tpr, _ = roc_curve(scores, labels)
        targets = targets_for(fpr)
        assert tpr_at_fpr(fpr, tpr, targets) == insightface_tprs(
            labels, scores, targets), i


def test_roc_default_drops_like_sklearn_default():
    rng = np.random.default_rng(7)
    labels = rng.random(5000) < 0.2
    scores = np.round(rng.normal(labels * 1.5, 1.0), 2).astype(np.float32)
    ref = sk_metrics.roc_curve(labels, scores)  # defaults
    ours = roc_curve(scores, labels)
    for r, o in zip(ref, ours):
        np.testing.assert_array_equal(o, r)
    assert len(ours[0]) < len(roc_curve(scores, labels, False)[0])


def test_drop_intermediate_changes_the_tpr():
    """A horizontal run through the target: keeping every point picks the
    point on the run; insightface's curve lacks it, the nearest kept FPR is
    the run's right end, whose tie goes to the corner above it."""
    # descending: genuine, 3 impostors at distinct scores, genuine, then
    # 97 impostors and 8 genuine at the bottom
    scores = np.r_[10.0, 9, 8, 7, 6, np.full(97, 1.0), np.full(8, 0.5)]
    labels = np.r_[1, 0, 0, 0, 1, np.zeros(97), np.ones(8)].astype(int)
    target = 0.02  # 2 of 100 impostors
    fpr, tpr, _ = roc_curve(scores, labels)
    got = tpr_at_fpr(fpr, tpr, [target])[target]
    assert got == insightface_tprs(labels, scores, [target])[target] == 0.2
    fpr_all, tpr_all, _ = roc_curve(scores, labels, drop_intermediate=False)
    assert tpr_at_fpr(fpr_all, tpr_all, [target])[target] == 0.1 != got


def test_drop_intermediate_changes_tpr_on_random_case():
    """The issue's situation on random 4,000-pair data with ties."""
    rng = np.random.default_rng(0)
    labels = (rng.random(4000) < 0.05).astype(np.int64)
    scores = np.round(rng.normal(labels * 2.5, 1.0), 4)
    fpr, tpr, _ = roc_curve(scores, labels)
    ours = tpr_at_fpr(fpr, tpr, DEFAULT_FPRS)
    assert ours == insightface_tprs(labels, scores, DEFAULT_FPRS)
    fpr_all, tpr_all, _ = roc_curve(scores, labels, drop_intermediate=False)
    keep_all = tpr_at_fpr(fpr_all, tpr_all, DEFAULT_FPRS)
    assert keep_all[0.1] != ours[0.1]  # 0.8915 kept-all vs 0.8962


def brute_tpr(scores, labels, target):
    """Literal keep-all protocol: ROC point per distinct threshold, nearest
    FPR, highest TPR on ties."""
    pos, neg = labels.sum(), (~labels).sum()
    pts = [(0.0, 0.0)]
    for t in sorted(set(scores), reverse=True):
        acc = scores >= t
        pts.append(((acc & ~labels).sum() / neg, (acc & labels).sum() / pos))
    best = min(abs(p[0] - target) for p in pts)
    return max(p[1] for p in pts if abs(p[0] - target) == best)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_keep_all_roc_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.3
    # rounded scores create ties, including mixed genuine/impostor ties
    scores = np.round(rng.normal(labels * 1.0, 1.0), 1)
    fpr, tpr, _ = roc_curve(scores, labels, drop_intermediate=False)
    for target in (1e-3, 1e-2, 0.05, 0.1, 0.3):
        assert tpr_at_fpr(fpr, tpr, [target])[target] == pytest.approx(
            brute_tpr(scores, labels, target))


def test_small_roc_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([1, 0, 1, 0, 0], bool)
    fpr, tpr, thr = roc_curve(scores, labels, drop_intermediate=False)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, .5, .5, 1, 1, 1])
    np.testing.assert_array_equal(thr, [np.inf, .9, .8, .7, .6, .5])
    # nearest FPR to 0.3 is 1/3: two points, the higher TPR wins
    assert tpr_at_fpr(fpr, tpr, [0.3])[0.3] == 1.0
    assert tpr_at_fpr(fpr, tpr, [1e-6])[1e-6] == 0.5
    # default: (2/3, 1) lies between (1/3, 1) and (1, 1) -> dropped
    fpr, tpr, thr = roc_curve(scores, labels)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 1])
    np.testing.assert_allclose(tpr, [0, .5, .5, 1, 1])
    np.testing.assert_array_equal(thr, [np.inf, .9, .8, .7, .5])
    assert tpr_at_fpr(fpr, tpr, [0.6])[0.6] == 1.0


@pytest.mark.parametrize('labels', [np.ones(6, int), np.zeros(6),
                                    np.full(6, -1), np.ones(6, bool)])
def test_one_class(labels):
    scores = np.array([0.1, 0.4, 0.4, 0.2, 0.9, 0.9])
    with pytest.raises(ValueError, match='genuine and impostor'):
        roc_curve(scores, labels)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ref = sk_metrics.roc_curve(labels, scores)
        for drop in (True, False):
            ours = roc_curve(scores, labels, drop_intermediate=drop,
                             allow_one_class=True)
            ref = sk_metrics.roc_curve(labels, scores,
                                       drop_intermediate=drop)
            for r, o in zip(ref, ours):
                np.testing.assert_array_equal(o, r)
    with pytest.warns(RuntimeWarning, match='undefined'):
        roc_curve(scores, labels, allow_one_class=True)


@pytest.mark.parametrize('labels', [[0, 2, 0, 2], [0.5, 1, 1, 0],
                                    [-1, 0, 1, 1], ['a', 'b', 'a', 'b']])
def test_labels_sklearn_rejects(labels):
    scores = np.array([0.3, 0.1, 0.2, 0.9])
    with pytest.raises(ValueError):
        sk_metrics.roc_curve(labels, scores)
    with pytest.raises(ValueError):
        roc_curve(scores, np.array(labels))


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_scores_raise(bad):
    with pytest.raises(ValueError, match='NaN or infinity'):
        roc_curve(np.array([0.1, bad, 0.3]), np.array([0, 1, 1]))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match='1-D of one length'):
        roc_curve(np.zeros(3), np.zeros(4))


# score_pairs / template_pooling (the other two steps of the fast path) ----

def loop_pooling(feats, face_scores, tids, mids):
    """insightface's image2template_feature, literally."""
    feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    feats = feats * face_scores[:, None]
    unique_t = np.unique(tids)
    out = np.zeros((len(unique_t), feats.shape[1]))
    for c, t in enumerate(unique_t):
        f_t, m_t = feats[tids == t], mids[tids == t]
        out[c] = sum(f_t[m_t == m].mean(0) for m in np.unique(m_t))
    return unique_t, out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.parametrize('seed', [0, 1])
def test_template_pooling_matches_loop(seed):
    from mmfacekd.evaluation.functional import template_pooling
    rng = np.random.default_rng(seed)
    n = 500
    tids = rng.choice([3, 10, 11, 40, 41, 42, 900], n)
    mids = rng.integers(-2, 6, n) + 100 * (tids % 2)
    feats = rng.normal(size=(n, 16)).astype(np.float32)
    fs = rng.uniform(0.3, 1.0, n).astype(np.float32)
    ref_t, ref_f = loop_pooling(feats.astype(np.float64), fs, tids, mids)
    templates, got = template_pooling(feats, fs, tids, mids)
    np.testing.assert_array_equal(templates, ref_t)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, ref_f, atol=2e-6)


@pytest.mark.parametrize('offset', [0, 10**12])  # lookup table / search
@pytest.mark.parametrize('block', [1, 3, 64])
def test_score_pairs_matches_dot_products(offset, block):
    from mmfacekd.evaluation.functional import score_pairs
    rng = np.random.default_rng(block)
    templates = np.sort(rng.choice(400, 37, replace=False)) + offset
    feats = rng.normal(size=(37, 8)).astype(np.float32)
    i1, i2 = rng.integers(0, 37, 2000), rng.integers(0, 37, 2000)
    got = score_pairs(templates, feats, templates[i1], templates[i2],
                      block=block)
    ref = np.einsum('ij,ij->i', feats[i1].astype(np.float64),
                    feats[i2].astype(np.float64))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # symmetric: (a, b) and (b, a) score identically
    np.testing.assert_array_equal(
        got, score_pairs(templates, feats, templates[i2], templates[i1],
                         block=block))


@pytest.mark.parametrize('bad_id', [-1, 5, 10**9])
def test_score_pairs_unknown_template_names_first_pair(bad_id):
    from mmfacekd.evaluation.functional import score_pairs
    templates = np.array([2, 4, 8])
    feats = np.eye(3, dtype=np.float32)
    t1 = np.array([2, 4, 8, bad_id, bad_id])
    t2 = np.array([4, 8, 2, 2, 4])
    with pytest.raises(KeyError) as e:
        score_pairs(templates, feats, t1, t2)
    assert e.value.args[0] == 3
    with pytest.raises(KeyError) as e:
        score_pairs(templates, feats, t2, t1)
    assert e.value.args[0] == 3

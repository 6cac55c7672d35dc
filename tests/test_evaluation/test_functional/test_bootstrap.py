"""Seeded bootstrap intervals: hand-computed cases, determinism, pairing."""
import numpy as np
import pytest

from mmfacekd.evaluation.functional.bootstrap import (
    cluster_mean_replicates,
    identification_tpr_replicates,
    paired_ci,
    percentile_ci,
    tpr_at_fpr_replicates,
    verification_fold_accuracies,
    verification_replicates,
)
from mmfacekd.evaluation.metrics.verification import verification_accuracy


def pair_case(n=3000, seed=0, noise=1.0, dim=32):
    rng = np.random.default_rng(seed)
    e1 = rng.normal(size=(n, dim)).astype(np.float32)
    same = rng.random(n) < 0.5
    e2 = np.where(same[:, None], e1 + noise * rng.normal(size=(n, dim)),
                  rng.normal(size=(n, dim))).astype(np.float32)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 /= np.linalg.norm(e2, axis=1, keepdims=True)
    return e1, e2, same


def test_histogram_protocol_equals_verification_accuracy():
    for n, noise in ((3000, 1.0), (1237, 1.5), (95, 2.0)):
        e1, e2, same = pair_case(n, noise=noise)
        ref, _ = verification_accuracy(e1, e2, same)
        dist = np.sum(np.square(np.subtract(e1, e2)), 1)
        np.testing.assert_array_equal(verification_fold_accuracies(dist, same),
                                      ref)


def test_binomial_case_matches_normal_interval():
    # an obvious threshold: genuine at d=0.2, impostors at d=3.5, and a
    # fraction 1 - p of each flipped; accuracy = p, each pair independent
    n, p = 20000, 0.9
    rng = np.random.default_rng(1)
    same = rng.random(n) < 0.5
    wrong = rng.random(n) < 1 - p
    dist = np.where(same ^ wrong, 0.2, 3.5)
    acc = verification_fold_accuracies(dist, same).mean()
    reps = verification_replicates(dist, same, 2000, seed=0)
    lo, hi = percentile_ci(reps)
    half = 1.96 * np.sqrt(acc * (1 - acc) / n)
    assert lo == pytest.approx(acc - half, abs=0.15 * half)
    assert hi == pytest.approx(acc + half, abs=0.15 * half)
    # the generic mean bootstrap agrees
    reps = cluster_mean_replicates(~wrong, np.arange(n), 2000, seed=0)
    lo, hi = percentile_ci(reps)
    m = np.mean(~wrong)
    half = 1.96 * np.sqrt(m * (1 - m) / n)
    assert (lo, hi) == pytest.approx((m - half, m + half), abs=0.1 * half)


def test_deterministic_for_a_seed_and_chunk_independent():
    e1, e2, same = pair_case(600)
    dist = np.sum(np.square(e1 - e2), 1)
    a = verification_replicates(dist, same, 100, seed=3, name='lfw')
    b = verification_replicates(dist, same, 100, seed=3, name='lfw',
                                chunk=7)
    np.testing.assert_array_equal(a, b)
    c = verification_replicates(dist, same, 100, seed=4, name='lfw')
    d = verification_replicates(dist, same, 100, seed=3, name='cfp')
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_paired_against_itself_is_exactly_zero():
    e1, e2, same = pair_case(900)
    dist = np.sum(np.square(e1 - e2), 1)
    r = verification_replicates(dist, same, 200, seed=0, name='x')
    assert paired_ci(r, r) == (0.0, 0.0, 0.0)
    s = np.random.default_rng(0).normal(size=900) + 2 * same
    t = tpr_at_fpr_replicates(s, same, (1e-2, ), 100, seed=0)
    assert paired_ci(t[:, 0], t[:, 0]) == (0.0, 0.0, 0.0)


def test_paired_narrower_than_unpaired_when_correlated():
    # model b = model a with a little extra noise: highly correlated errors
    e1, e2, same = pair_case(3000, noise=1.2)
    rng = np.random.default_rng(5)
    f2 = e2 + 0.02 * rng.normal(size=e2.shape).astype(np.float32)
    f2 /= np.linalg.norm(f2, axis=1, keepdims=True)
    da = np.sum(np.square(e1 - e2), 1)
    db = np.sum(np.square(e1 - f2), 1)
    ra = verification_replicates(da, same, 500, seed=0, name='s')
    rb = verification_replicates(db, same, 500, seed=0, name='s')
    _, plo, phi = paired_ci(ra, rb)
    rb_indep = verification_replicates(db, same, 500, seed=1, name='s')
    _, ulo, uhi = paired_ci(ra, rb_indep)
    assert phi - plo < 0.7 * (uhi - ulo)


def test_tpr_fast_path_equals_roc_curve_on_each_resample():
    rng = np.random.default_rng(2)
    n = 4000
    lab = np.zeros(n, bool)
    lab[:400] = True
    s = rng.normal(size=n) + 2 * lab
    # ties inside each class (duplicated groups), none across classes
    s[lab] = np.round(s[lab], 1) + 0.05
    s[~lab] = np.round(s[~lab], 1)
    fprs = (1e-3, 1e-2, 1e-1, 0.5)
    fast = tpr_at_fpr_replicates(s, lab, fprs, 30, seed=1, name='ijbc')
    exact = tpr_at_fpr_replicates(s, lab, fprs, 30, seed=1, name='ijbc',
                                  exact=True)
    np.testing.assert_array_equal(fast, exact)
    # ties across classes: still equal
    s2 = np.round(s, 0)
    np.testing.assert_array_equal(
        tpr_at_fpr_replicates(s2, lab, fprs, 10, seed=1),
        tpr_at_fpr_replicates(s2, lab, fprs, 10, seed=1, exact=True))


def test_tpr_fast_path_equals_exact_where_dropping_matters():
    """The hand-built case where drop_intermediate changes the TPR (no score
    shared across classes) and random heavily tied cases: every replicate
    of the default path equals roc_curve + tpr_at_fpr on the resample."""
    scores = np.r_[10.0, 9, 8, 7, 6, np.full(97, 1.0), np.full(8, 0.5)]
    labels = np.r_[1, 0, 0, 0, 1, np.zeros(97), np.ones(8)].astype(int)
    fprs = (0.01, 0.02, 0.03, 0.5)
    np.testing.assert_array_equal(
        tpr_at_fpr_replicates(scores, labels, fprs, 200, seed=0),
        tpr_at_fpr_replicates(scores, labels, fprs, 200, seed=0, exact=True))
    rng = np.random.default_rng(5)
    for case in range(40):
        n = int(rng.integers(20, 300))
        lab = rng.random(n) < rng.uniform(0.1, 0.6)
        lab[:2] = [True, False]
        levels = int(rng.integers(2, 12))
        s = np.round(rng.normal(1.5 * lab, 1.0) * levels / 4) / levels
        fprs = tuple(rng.uniform(0, 0.6, 3))
        np.testing.assert_array_equal(
            tpr_at_fpr_replicates(s, lab.astype(int), fprs, 20, seed=case),
            tpr_at_fpr_replicates(s, lab.astype(int), fprs, 20, seed=case,
                                  exact=True))


def test_identification_tpr_replicates_by_brute_force():
    from mmfacekd.evaluation.functional.bootstrap import (
        make_rng,
        resample_indices,
    )
    rng = np.random.default_rng(3)
    n_p, n_d = 12, 30
    imp = rng.normal(size=(n_p, n_d))
    ids = np.repeat(np.arange(4), 3)
    pairs = np.array([(i, j) for i in range(n_p) for j in range(i + 1, n_p)
                      if ids[i] == ids[j]])
    gen = rng.normal(size=len(pairs)) + 1.5
    fprs = (0.01, 0.1)
    reps = identification_tpr_replicates(gen, pairs, imp, n_d, n_p, fprs,
                                         40, seed=2, name='mf')
    idx = np.concatenate(list(resample_indices(n_p, 40, make_rng(2, 'mf'))))
    for r, row in enumerate(idx):
        w = np.bincount(row, minlength=n_p)
        pool = np.sort(np.repeat(imp.ravel(), np.repeat(w, n_d)))[::-1]
        gw = w[pairs[:, 0]] * w[pairs[:, 1]]
        for j, f in enumerate(fprs):
            t = pool[int(np.floor(f * n_p * n_d))]  # the (m+1)-th highest
            want = (gw * (gen > t)).sum() / gw.sum() if gw.sum() else np.nan
            np.testing.assert_allclose(reps[r, j], want)

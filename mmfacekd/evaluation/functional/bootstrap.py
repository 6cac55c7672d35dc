"""Seeded percentile-bootstrap confidence intervals for the face protocols.

Every function here draws its resamples from a ``numpy.random.Generator``
built from ``(seed, name)`` (:func:`make_rng`), one replicate after the
other, so the replicates depend only on the seed, the set name and the
number of items — never on chunk sizes, threads or the order in which sets
are evaluated. Two models scored on the SAME pairs (or probes) with the same
seed and name therefore get the SAME bootstrap indices: the difference of
their replicates is the paired bootstrap of the difference
(:func:`paired_ci`), and a model compared with itself gets exactly
``[0, 0]``.

What is resampled, per protocol:

* **10-fold verification accuracy** (:func:`verification_replicates`):
  pairs are resampled with replacement *within each of the 10 contiguous
  folds* (stratified by fold: each fold keeps its size), then the whole
  protocol is rerun on the resample — per fold, the first best threshold of
  the grid ``arange(0, 4, 0.01)`` on the other nine (resampled) folds,
  applied to the (resampled) held-out fold, mean of the 10 fold accuracies.
  No approximation: with every pair drawn once it reproduces
  :func:`mmfacekd.evaluation.metrics.verification.verification_accuracy`
  exactly. It is fast because a pair only matters through its fold, its
  label and the grid cell its distance falls in, so a replicate is a
  ``(folds, 2, 401)`` histogram (one ``bincount``) and the threshold sweep
  two cumulative sums.
* **IJB TPR@FPR** (:func:`tpr_at_fpr_replicates`): template pairs are
  resampled with replacement, genuine and impostor pairs separately
  (stratified by label, so the FPR grid keeps its step), and the ROC rule of
  :mod:`mmfacekd.evaluation.functional.ijb` (``roc_curve`` then
  ``tpr_at_fpr``: the point whose FPR is nearest the target, ties to the
  highest TPR) is recomputed on each resample. The vectorised path sorts
  once and works on per-score-group counts of the resample; ``exact=True``
  instead calls ``roc_curve``/``tpr_at_fpr`` on every resample (slow; the
  tests check the two agree). Pairs sharing a template are not
  independent, so this pair-level bootstrap is somewhat optimistic (a
  template-cluster bootstrap would be wider); it is the customary one.
* **1:N Rank-1** (:func:`cluster_mean_replicates`): probes are resampled
  with replacement; a probe brings all its (probe, gallery) pairs, and the
  replicate is the hit rate over the resampled pairs (a ratio estimator).
* **1:N TPR@FPR** (:func:`identification_tpr_replicates`): probes are
  resampled; a probe of weight ``w`` weights its impostor scores by ``w``;
  a genuine pair ``(i, j)`` by ``w_i * w_j``; the threshold is the
  ``(m + 1)``-th highest weighted impostor score, ``m = floor(f * n)``.

The interval is the percentile interval of the replicates
(:func:`percentile_ci`, ``numpy.percentile`` with linear interpolation).
"""
import zlib
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

__all__ = ['make_rng', 'percentile_ci', 'paired_ci', 'resample_indices',
           'verification_fold_accuracies', 'verification_replicates',
           'tpr_at_fpr_replicates', 'cluster_mean_replicates',
           'identification_tpr_replicates', 'DEFAULT_N_BOOT']

DEFAULT_N_BOOT = 1000

#: the LFW threshold grid (docs/formats.md §2)
VERIFICATION_THRESHOLDS = np.arange(0, 4, 0.01)


def make_rng(seed: int, name: str = '') -> np.random.Generator:
    """The Generator of one set: ``SeedSequence([seed, crc32(name)])``."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))


def percentile_ci(replicates: np.ndarray,
                  level: float = 0.95) -> Tuple[float, float]:
    """Percentile interval ``[q(α/2), q(1 − α/2)]`` of ``replicates`` (along
    axis 0), ``α = 1 − level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f'ci level must be in (0, 1), got {level}')
    reps = np.asarray(replicates, np.float64)
    lo, hi = np.percentile(reps, [50 * (1 - level), 50 * (1 + level)],
                           axis=0)
    if np.ndim(lo) == 0:
        return float(lo), float(hi)
    return lo, hi


def paired_ci(replicates_a: np.ndarray, replicates_b: np.ndarray,
              level: float = 0.95) -> Tuple[float, float, float]:
    """Difference ``a − b`` of two models' replicates drawn with the SAME
    indices: ``(mean difference of replicates, low, high)``. (The point
    difference itself is ``metric_a − metric_b``.)"""
    a = np.asarray(replicates_a, np.float64)
    b = np.asarray(replicates_b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f'paired replicates differ in shape: {a.shape} vs '
                         f'{b.shape}; were they drawn with the same n_boot?')
    d = a - b
    lo, hi = percentile_ci(d, level)
    return float(d.mean()), lo, hi


def resample_indices(n: int, n_boot: int, rng: np.random.Generator,
                     strata: Optional[np.ndarray] = None,
                     chunk: int = 64) -> Iterator[np.ndarray]:
    """Yield ``(c, n)`` blocks of bootstrap indices, ``n_boot`` rows in all.

    Each row is drawn with replacement, stratum by stratum when ``strata``
    (one label per item) is given — row ``r``'s positions of stratum ``s``
    hold items of stratum ``s`` only. Rows are drawn one after the other
    from ``rng``, so the values do not depend on ``chunk``.
    """
    if strata is None:
        groups = [np.arange(n)]
    else:
        strata = np.asarray(strata)
        if len(strata) != n:
            raise ValueError(f'strata has {len(strata)} labels for {n} '
                             'items')
        order = np.argsort(strata, kind='stable')
        bounds = np.flatnonzero(np.diff(strata[order])) + 1
        groups = np.split(order, bounds)
    for r0 in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - r0)
        block = np.empty((rows, n), np.int64)
        for r in range(rows):
            for g in groups:
                block[r, g] = g[rng.integers(0, len(g), len(g))]
        yield block


def _fold_of(n: int, n_folds: int) -> np.ndarray:
    sizes = np.full(n_folds, n // n_folds)
    sizes[:n % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


def _fold_accuracy_from_hist(hist: np.ndarray) -> np.ndarray:
    """Fold accuracies of the 10-fold protocol from pair-count histograms.

    Args:
        hist: ``(R, F, 2, T + 1)`` counts of (fold, label, grid cell); the
            cell of distance ``d`` is the number of thresholds ``<= d``, so
            ``d < t_k`` iff ``cell <= k``.

    Returns:
        ``(R, F)`` held-out accuracies.
    """
    n_thr = hist.shape[-1] - 1
    cum = np.cumsum(hist, axis=-1)[..., :n_thr]      # (R, F, 2, T)
    neg_total = hist[:, :, 0].sum(-1, keepdims=True)  # (R, F, 1)
    tp = cum[:, :, 1]                                # genuine with d < t
    tn = neg_total - cum[:, :, 0]                    # impostors with d >= t
    correct = tp + tn                                # (R, F, T)
    train = correct.sum(1, keepdims=True) - correct  # other folds
    best = np.argmax(train, axis=-1)                 # first best threshold
    n_fold = hist.sum((2, 3))                        # (R, F)
    hit = np.take_along_axis(correct, best[..., None], -1)[..., 0]
    with np.errstate(invalid='ignore', divide='ignore'):
        return hit / n_fold


def _cells(dist: np.ndarray) -> np.ndarray:
    return np.searchsorted(VERIFICATION_THRESHOLDS, np.asarray(dist),
                           side='right')


def verification_fold_accuracies(dist: np.ndarray, issame: np.ndarray,
                                 n_folds: int = 10) -> np.ndarray:
    """The 10 fold accuracies of the LFW protocol from squared distances
    (the histogram form of :func:`verification_accuracy`; equal to it)."""
    dist = np.asarray(dist)
    issame = np.asarray(issame, bool)
    n_thr = len(VERIFICATION_THRESHOLDS)
    fold = _fold_of(len(dist), n_folds)
    key = (fold * 2 + issame) * (n_thr + 1) + _cells(dist)
    hist = np.bincount(key, minlength=n_folds * 2 * (n_thr + 1))
    return _fold_accuracy_from_hist(
        hist.reshape(1, n_folds, 2, n_thr + 1))[0]


def verification_replicates(dist: np.ndarray, issame: np.ndarray,
                            n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                            name: str = '', n_folds: int = 10,
                            chunk: int = 64) -> np.ndarray:
    """Bootstrap replicates of the 10-fold mean accuracy (fraction).

    Pairs are resampled within their fold (see the module doc) and the full
    protocol — threshold selection on the nine other folds included — is
    rerun on every resample.

    Args:
        dist: ``(P,)`` squared distances ``‖e1 − e2‖²`` in pair order.
        issame: ``(P,)`` pair labels.
        n_boot, seed, name: replicates and their generator
            (:func:`make_rng`); equal for two models → paired replicates.

    Returns:
        ``(n_boot,)`` mean fold accuracies.
    """
    dist = np.asarray(dist)
    issame = np.asarray(issame, bool)
    n = len(dist)
    n_thr = len(VERIFICATION_THRESHOLDS)
    fold = _fold_of(n, n_folds)
    key = (fold * 2 + issame) * (n_thr + 1) + _cells(dist)
    size = n_folds * 2 * (n_thr + 1)
    out = []
    for idx in resample_indices(n, n_boot, make_rng(seed, name), fold,
                                chunk):
        rows = len(idx)
        flat = key[idx] + (np.arange(rows) * size)[:, None]
        hist = np.bincount(flat.ravel(), minlength=rows * size)
        acc = _fold_accuracy_from_hist(
            hist.reshape(rows, n_folds, 2, n_thr + 1))
        out.append(acc.mean(1))
    return np.concatenate(out) if out else np.zeros(0)


def _tpr_reference(scores, labels, fprs) -> np.ndarray:
    from .ijb import roc_curve, tpr_at_fpr
    fpr, tpr, _ = roc_curve(scores, labels)
    table = tpr_at_fpr(fpr, tpr, fprs)
    return np.array([table[f] for f in fprs])


def tpr_at_fpr_replicates(scores: np.ndarray, labels: np.ndarray,
                          fprs: Sequence[float], n_boot: int = DEFAULT_N_BOOT,
                          seed: int = 0, name: str = '',
                          exact: bool = False, chunk: int = 16) -> np.ndarray:
    """Bootstrap replicates of IJB TPR at each FPR (fractions).

    Genuine and impostor pairs are resampled separately; each replicate
    gets the TPR of :func:`~mmfacekd.evaluation.functional.ijb.tpr_at_fpr`
    on :func:`~mmfacekd.evaluation.functional.ijb.roc_curve` of the
    resample (insightface's rule: scikit-learn's ``drop_intermediate`` then
    the nearest FPR). The default path sorts the distinct scores once; a
    resample is then a count of impostors and genuines per distinct score,
    its ROC the cumulative sums over the scores it contains, with the same
    point-dropping rule (an interior point goes when the step into it equals
    the step out of it, in both counts) and the same nearest-FPR choice, so
    it equals ``exact=True`` (``roc_curve`` + ``tpr_at_fpr`` on every
    resample) bit for bit, ties included.

    Cost: ``O(n_boot · P)``; a few seconds for 1000 replicates of 200k
    pairs on one CPU core, about ``n_boot × 0.6 s`` for IJB-C's 15.7M pairs
    (lower ``n_bootstrap`` there, e.g. 200).

    Returns:
        ``(n_boot, len(fprs))``.
    """
    from .ijb import _positive_mask
    scores = np.asarray(scores, np.float64)
    labels = _positive_mask(np.asarray(labels))
    fprs = tuple(float(f) for f in fprs)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f'the ROC needs genuine and impostor pairs; got '
                         f'{n_pos} genuine and {n_neg} impostor pairs.')
    rng = make_rng(seed, name)
    if exact:
        out = []
        for idx in resample_indices(len(scores), n_boot, rng, labels, chunk):
            for row in idx:
                out.append(_tpr_reference(scores[row], labels[row], fprs))
        return np.array(out).reshape(n_boot, len(fprs))
    # distinct scores in descending order; the group of every pair
    _, group = np.unique(-scores, return_inverse=True)
    group = group.reshape(-1)
    n_grp = int(group.max()) + 1
    neg_group, pos_group = group[~labels], group[labels]
    targets = np.asarray(fprs)[:, None]
    out = np.empty((n_boot, len(fprs)))
    for r in range(n_boot):
        # the draws of resample_indices(strata=labels): impostors, genuine
        neg_draw = rng.integers(0, n_neg, n_neg)
        pos_draw = rng.integers(0, n_pos, n_pos)
        neg_cnt = np.bincount(neg_group[neg_draw], minlength=n_grp)
        pos_cnt = np.bincount(pos_group[pos_draw], minlength=n_grp)
        present = (neg_cnt + pos_cnt) > 0
        neg_cnt, pos_cnt = neg_cnt[present], pos_cnt[present]
        if len(neg_cnt) > 2:  # roc_curve's drop_intermediate rule
            keep = np.ones(len(neg_cnt), bool)
            keep[1:-1] = ((neg_cnt[2:] != neg_cnt[1:-1])
                          | (pos_cnt[2:] != pos_cnt[1:-1]))
        else:
            keep = slice(None)
        fpr = np.r_[0, np.cumsum(neg_cnt)[keep]] / n_neg
        tpr = np.r_[0, np.cumsum(pos_cnt)[keep]] / n_pos
        # nearest FPR; among equally near points the last (highest TPR)
        dist = np.abs(fpr[None, :] - targets)
        nearest = dist == dist.min(1, keepdims=True)
        last = dist.shape[1] - 1 - np.argmax(nearest[:, ::-1], axis=1)
        out[r] = tpr[last]
    return out


def cluster_mean_replicates(values: np.ndarray, clusters: np.ndarray,
                            n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                            name: str = '', chunk: int = 256) -> np.ndarray:
    """Replicates of ``mean(values)`` resampling whole clusters.

    ``values`` (one per item, e.g. the rank-1 hit of each (probe, gallery)
    pair) belong to ``clusters`` (e.g. the probe index); a replicate draws
    the clusters with replacement and averages the values of the drawn
    clusters' items (each item counted as often as its cluster is drawn).
    With one item per cluster this is the plain bootstrap of a mean.
    """
    values = np.asarray(values, np.float64)
    _, cl = np.unique(np.asarray(clusters), return_inverse=True)
    cl = cl.reshape(-1)
    n_cl = int(cl.max()) + 1 if len(cl) else 0
    sums = np.bincount(cl, values, minlength=n_cl)
    counts = np.bincount(cl, minlength=n_cl).astype(np.float64)
    out = []
    for idx in resample_indices(n_cl, n_boot, make_rng(seed, name),
                                chunk=chunk):
        out.append(sums[idx].sum(1) / counts[idx].sum(1))
    return np.concatenate(out) if out else np.zeros(0)


def identification_tpr_replicates(genuine_scores: np.ndarray,
                                  genuine_pairs: np.ndarray,
                                  top_impostors: np.ndarray,
                                  n_distractors: int, n_probes: int,
                                  fprs: Sequence[float],
                                  n_boot: int = DEFAULT_N_BOOT,
                                  seed: int = 0, name: str = '',
                                  chunk: int = 64) -> np.ndarray:
    """Replicates of the MegaFace-rule TPR@FPR, resampling probes.

    Args:
        genuine_scores: ``(G,)`` scores of the unordered same-identity probe
            pairs; ``genuine_pairs`` ``(G, 2)`` their probe indices.
        top_impostors: ``(P, k)`` each probe's ``k`` highest distractor
            scores, ``k >= floor(max(fprs) * P * N) + 1`` (or all ``N``).
        n_distractors, n_probes: ``N`` and ``P``.

    A probe drawn ``w`` times weights its ``N`` impostor scores by ``w`` and
    a genuine pair ``(i, j)`` by ``w_i · w_j``; the threshold is the
    ``(m + 1)``-th highest weighted impostor score, ``m = floor(f · P · N)``
    (``P · N`` is unchanged by the resample); accept iff ``score > t``. The
    probes' own top ``m + 1`` scores always hold that threshold.

    Returns:
        ``(n_boot, len(fprs))`` fractions.
    """
    from .identification import num_false_accepts_allowed
    gen = np.asarray(genuine_scores, np.float64)
    pairs = np.asarray(genuine_pairs, np.int64).reshape(-1, 2)
    top = np.asarray(top_impostors, np.float64)
    n_imp = int(n_probes) * int(n_distractors)
    ms = [num_false_accepts_allowed(f, n_imp) for f in fprs]
    k = top.shape[1]
    m_max = max(ms) if ms else 0
    if m_max < n_imp and m_max + 1 > k and k < n_distractors:
        raise ValueError(f"need each probe's {m_max + 1} highest impostor "
                         f'scores, got {k}')
    order = np.argsort(-top, axis=None, kind='stable')
    vals = top.ravel()[order]
    owner = order // k
    # the threshold lies in a short prefix of the sorted list unless the
    # resample dropped most of its probes; such rows use the whole list
    prefix = min(len(vals), 8 * (m_max + 1))
    chunk = max(1, min(chunk, 4_000_000 // max(prefix, 1)))
    out = np.empty((n_boot, len(fprs)))
    r0 = 0
    for idx in resample_indices(n_probes, n_boot, make_rng(seed, name),
                                chunk=chunk):
        rows = len(idx)
        w = np.stack([np.bincount(r, minlength=n_probes) for r in idx])
        gw = (w[:, pairs[:, 0]] * w[:, pairs[:, 1]]).astype(np.float64)
        gtot = gw.sum(1)
        cw = np.cumsum(w[:, owner[:prefix]], 1)
        for j, m in enumerate(ms):
            if m >= n_imp:
                out[r0:r0 + rows, j] = 1.0
                continue
            t = np.empty(rows)
            for r in range(rows):
                c = cw[r]
                if c[-1] < m + 1:
                    c = np.cumsum(w[r, owner])
                t[r] = vals[int(np.searchsorted(c, m + 1, 'left'))]
            acc = (gw * (gen[None, :] > t[:, None])).sum(1)
            with np.errstate(invalid='ignore', divide='ignore'):
                out[r0:r0 + rows, j] = acc / gtot
        r0 += rows
    return out


def summarize(point: float, replicates: np.ndarray,
              level: float = 0.95) -> Dict[str, float]:
    """``dict(value, ci_low, ci_high)`` (for tables)."""
    lo, hi = percentile_ci(replicates, level)
    return dict(value=float(point), ci_low=lo, ci_high=hi)

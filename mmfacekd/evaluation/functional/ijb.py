"""IJB-B / IJB-C 1:1 template verification, vectorized.

The protocol (insightface ``eval_ijbc.py``; docs/formats.md §3): every image is
embedded with its horizontal flip and the two are summed; the sum is
L2-normalized and multiplied by the detector's face score; inside a template
the features of one media (frames of one video share a media id) are
averaged, the media features are summed, and the template feature is
L2-normalized; a pair's score is the cosine of its two template features; the
ROC runs over all pairs and TPR is reported at the ROC point whose FPR is
nearest to each target FPR, on scikit-learn's ROC (``roc_curve(label,
score)``, whose default ``drop_intermediate=True`` removes collinear points;
which points remain decides which one is nearest).

Here the per-template Python loop becomes one sparse (templates x images)
matmul, pair scoring is upper-triangle block matmuls of the template features
plus gathers, and the ROC is one value sort plus O(n) counting that
reproduces ``sklearn.metrics.roc_curve`` bit for bit without importing it.
"""
import warnings
from typing import Dict, Sequence, Tuple

import numpy as np
import torch

__all__ = ['DEFAULT_FPRS', 'template_pooling', 'score_pairs', 'roc_curve',
           'tpr_at_fpr']

DEFAULT_FPRS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def template_pooling(features: np.ndarray, face_scores: np.ndarray,
                     template_ids: np.ndarray, media_ids: np.ndarray,
                     use_norm_score: bool = True,
                     use_detector_score: bool = True
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Pool image features into L2-normalized template features.

    A template's raw feature is ``sum_media mean_{i in media} w_i f_i``
    = ``sum_i w_i / |media(i)| * f_i``, so the whole pooling is one sparse
    (templates x images) matrix times the (images x D) features: the
    features are read twice (norms, product) and never copied.

    Args:
        features (ndarray): (N, D) image features (image + flip, summed).
        face_scores (ndarray): (N,) detector scores.
        template_ids, media_ids (ndarray): (N,) integer ids per image.
        use_norm_score (bool): L2-normalize image features first
            (insightface's ``use_norm_score``). Defaults to True.
        use_detector_score (bool): Weight by the face score.
            Defaults to True.

    Returns:
        tuple: sorted unique template ids (T,) and their features (T, D).
    """
    feats = torch.from_numpy(np.ascontiguousarray(features, np.float32))
    tids = np.asarray(template_ids, np.int64)
    mids = np.asarray(media_ids, np.int64)
    weight = torch.ones(len(tids))
    if use_norm_score:
        weight /= feats.norm(dim=1)
    if use_detector_score:
        weight *= torch.as_tensor(np.asarray(face_scores, np.float32))
    # media of each image: unique (template, media) key
    mids0 = mids - mids.min()
    base = int(mids0.max()) + 1
    media_keys, media_of = np.unique(tids * base + mids0, return_inverse=True)
    media_of = media_of.reshape(-1)
    media_size = np.bincount(media_of, minlength=len(media_keys))
    templates, tmpl_of = np.unique(media_keys // base, return_inverse=True)
    row = tmpl_of.reshape(-1)[media_of]  # template index of each image
    weight /= torch.from_numpy(media_size[media_of].astype(np.float32))
    # CSR (templates x images): images grouped by template
    order = np.argsort(row, kind='stable')
    crow = np.zeros(len(templates) + 1, np.int64)
    np.cumsum(np.bincount(row, minlength=len(templates)), out=crow[1:])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "sparse CSR support is beta"
        pool = torch.sparse_csr_tensor(
            torch.from_numpy(crow), torch.from_numpy(order),
            weight[torch.from_numpy(order)],
            size=(len(templates), len(tids)))
        tmpl = pool @ feats
    tmpl = torch.nn.functional.normalize(tmpl, dim=1).numpy()
    return templates, np.ascontiguousarray(tmpl, np.float32)


def _template_index(templates: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row of each id in the sorted ``templates`` (int32 when it fits).

    A lookup table when the ids are small non-negative integers (IJB's
    are), else a binary search (much slower on 15M random ids).

    Raises:
        KeyError: the index of the first id not in ``templates``.
    """
    ids = np.asarray(ids)
    if ids.dtype.kind not in 'iu':
        ids = ids.astype(np.int64)
    idx_type = np.int32 if len(templates) < 2**31 else np.int64
    if not ids.size:
        return np.zeros(0, idx_type)
    lo, hi = int(ids.min()), int(ids.max())
    top = int(templates[-1]) if len(templates) else -1
    if len(templates) and templates[0] >= 0 and \
            top < max(1 << 22, 8 * len(templates)):
        if lo < 0 or hi > top:
            raise KeyError(int(np.flatnonzero((ids < 0) | (ids > top))[0]))
        lut = np.full(top + 1, -1, idx_type)
        lut[templates] = np.arange(len(templates), dtype=idx_type)
        idx = lut[ids]
        bad = idx < 0
    else:
        idx = np.searchsorted(templates, ids)
        idx_c = np.minimum(idx, max(len(templates) - 1, 0))
        bad = (templates[idx_c] != ids) if len(templates) else \
            np.ones(len(ids), bool)
        idx = idx.astype(idx_type)
    if bad.any():
        raise KeyError(int(np.flatnonzero(bad)[0]))
    return idx


def score_pairs(templates: np.ndarray, template_feats: np.ndarray,
                t1: np.ndarray, t2: np.ndarray,
                block: int = 2048) -> np.ndarray:
    """Cosine score of each pair ``(t1[i], t2[i])`` of template ids.

    ``templates`` must be sorted (as returned by :func:`template_pooling`).
    A pair is scored as ``(a, b) = (min, max)`` of its two template indices
    (the cosine is symmetric), so only the upper triangle of the template
    Gram matrix is needed: for each block of ``block`` rows ``a`` one matmul
    against the templates ``>= a`` (``block x T`` floats at most: 190 MB for
    IJB-C's 23,124 templates), then the pairs' scores are gathered from it.
    Pairs are bucketed by row block with a one-byte radix sort. IJB pair
    lists reuse templates
    heavily (15.7M pairs over 23k templates), so this does far less memory
    traffic than gathering two feature rows per pair.

    Raises:
        KeyError: if a pair names a template that has no images; the
            argument is the first such pair index.
    """
    i1 = _template_index(templates, t1)
    i2 = _template_index(templates, t2)
    n_t = len(templates)
    feats = torch.from_numpy(np.ascontiguousarray(template_feats,
                                                  dtype=np.float32))
    a = np.minimum(i1, i2)
    b = np.maximum(i1, i2)
    del i1, i2
    # bucket the pairs by row block: stable radix sort of the block id (keeps
    # each bucket in input order, so the gathers below stream)
    n_blocks = -(-n_t // block)
    blk = (a // block).astype(np.uint8 if n_blocks <= 256 else np.int64)
    order = np.argsort(blk, kind='stable')
    bounds = np.searchsorted(blk[order], np.arange(n_blocks + 1))
    del blk
    a, b = a[order], b[order]
    scores = np.empty(len(t1), np.float32)
    buf = torch.empty(min(block, n_t) * n_t)
    for k in range(n_blocks):
        lo, hi = bounds[k], bounds[k + 1]
        if lo == hi:
            continue
        r0 = k * block
        rows, cols = min(block, n_t - r0), n_t - r0
        sim = buf[:rows * cols].view(rows, cols)
        torch.mm(feats[r0:r0 + rows], feats[r0:].T, out=sim)
        a_k, b_k = a[lo:hi], b[lo:hi]
        if rows * cols >= 2**31:
            a_k, b_k = a_k.astype(np.int64), b_k.astype(np.int64)
        flat = torch.from_numpy((a_k - r0) * cols + (b_k - r0))
        scores[order[lo:hi]] = sim.view(-1).index_select(0, flat).numpy()
    return scores


def _positive_mask(labels: np.ndarray) -> np.ndarray:
    """Genuine mask of ``labels`` as scikit-learn infers it (pos_label 1).

    Labels must take values in {0, 1} or {-1, 1} (bool, int or float);
    anything else raises ``ValueError`` as ``sklearn.metrics.roc_curve``
    does without an explicit ``pos_label``.
    """
    if labels.dtype == bool:
        return labels
    if labels.dtype.kind not in 'iuf':
        raise ValueError(f'labels must be numeric 0/1 or -1/1; got dtype '
                         f'{labels.dtype}.')
    pos = labels == 1
    if labels.size:
        low = labels.min()
        n_pos = int(np.count_nonzero(pos))
        if not (low in (0, -1, 1) and
                (low == 1 or n_pos + int(np.count_nonzero(labels == low))
                 == labels.size)):
            raise ValueError('labels must take values in {0, 1} or {-1, 1}; '
                             f'got values in {np.unique(labels)[:5]} ...')
    return pos


def roc_curve(scores: np.ndarray, labels: np.ndarray,
              drop_intermediate: bool = True,
              allow_one_class: bool = False
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve, identical to ``sklearn.metrics.roc_curve(labels, scores)``.

    One ROC point per distinct score (thresholds in decreasing order: a pair
    is accepted when its score is ``>=`` the threshold), preceded by the
    point ``(0, 0)`` with threshold ``inf``. With ``drop_intermediate``
    (the default, as in scikit-learn and therefore in insightface's
    ``eval_ijbc.py``) a point is removed when the steps in false and true
    positive counts that lead into it and out of it are equal, i.e. it lies
    in the middle of an evenly spaced collinear run; the first and last
    distinct-score points always stay, and nothing is dropped with two or
    fewer distinct scores. The nearest-FPR rule of :func:`tpr_at_fpr`
    depends on which points remain, so this reproduces insightface's TPRs;
    ``drop_intermediate=False`` keeps every point.

    The arrays equal scikit-learn's bit for bit (float64 ``fpr``/``tpr``;
    float64 ``thresholds``). The work is one value sort of the scores (no
    argsort) plus O(n) counting; scikit-learn is not needed at run time.

    Args:
        scores (ndarray): (n,) scores, higher = more likely genuine.
        labels (ndarray): (n,) labels in {0, 1} or {-1, 1}; 1 is genuine.
        drop_intermediate (bool): Drop collinear intermediate points.
            Defaults to True.
        allow_one_class (bool): With only genuine or only impostor labels,
            return scikit-learn's NaN ``fpr`` (or ``tpr``) and warn instead
            of raising ``ValueError``. Defaults to False.

    Returns:
        tuple: ``(fpr, tpr, thresholds)``.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f'scores and labels must be 1-D of one length; got '
                         f'shapes {scores.shape} and {labels.shape}.')
    if scores.size == 0:
        raise ValueError('the ROC needs at least one pair; got none.')
    if scores.dtype.kind not in 'iuf' or (scores.dtype.kind == 'f' and
                                          scores.dtype.itemsize < 4):
        scores = scores.astype(np.float64)  # bool, float16, object
    pos = _positive_mask(labels)
    n = scores.size
    n_pos = int(np.count_nonzero(pos))
    n_neg = n - n_pos
    if (n_pos == 0 or n_neg == 0) and not allow_one_class:
        raise ValueError(f'the ROC needs genuine and impostor pairs; got '
                         f'{n_pos} genuine and {n_neg} impostor pairs.')
    srt = np.sort(scores)  # ascending, NaN last
    if scores.dtype.kind == 'f' and not (np.isfinite(srt[0])
                                         and np.isfinite(srt[-1])):
        raise ValueError('scores contain NaN or infinity.')
    # Work in ascending order of the distinct values j = 0..G-1; the ROC
    # lists them descending. ends[j] = last sorted index of value j (j<G-1).
    ends = np.flatnonzero(srt[1:] != srt[:-1])
    n_values = len(ends) + 1
    values = np.empty(n_values, np.float64)
    values[:-1] = srt[ends]
    values[-1] = srt[-1]
    del srt
    # accepted pairs at threshold value j (all scores >= it)
    accepted = np.empty(n_values, np.int64)
    accepted[0] = n
    np.subtract(n - 1, ends, out=accepted[1:])
    del ends
    # distinct value of each genuine pair (exact match), sorted
    pos_value = np.sort(np.searchsorted(values, scores[pos]))
    if drop_intermediate and n_values > 2:
        # A point is dropped when the step into it equals the step out of
        # it, in impostors and in genuines: value j against value j - 1 in
        # group size (accepted[j] - accepted[j + 1]) and genuine count.
        keep = np.ones(n_values, bool)
        keep[1:-1] = np.diff(accepted, 2) != 0
        # genuine counts: non-zero only at the few values holding genuines,
        # so compare them sparsely at those values and the ones above
        grp, cnt = np.unique(pos_value, return_counts=True)
        cand = np.union1d(grp, grp + 1)
        cand = cand[(cand >= 1) & (cand <= n_values - 2)]

        def count_at(j):
            k = np.minimum(np.searchsorted(grp, j), len(grp) - 1)
            return np.where(grp[k] == j, cnt[k], 0)

        keep[cand[count_at(cand) != count_at(cand - 1)]] = True
        kept = np.flatnonzero(keep)[::-1]
    else:
        kept = np.arange(n_values - 1, -1, -1)
    tps = n_pos - np.searchsorted(pos_value, kept)
    fps = accepted[kept] - tps
    thresholds = values[kept]
    fps = np.r_[0, fps]
    tps = np.r_[0, tps]
    thresholds = np.r_[np.inf, thresholds]
    fpr = _rate(fps, n_neg, 'no impostor pairs: the FPR')
    tpr = _rate(tps, n_pos, 'no genuine pairs: the TPR')
    return fpr, tpr, thresholds


def _rate(counts: np.ndarray, total: int, what: str) -> np.ndarray:
    """``counts / total``; all NaN (with a warning) when ``total`` is 0."""
    if total == 0:
        warnings.warn(f'{what} is undefined (NaN)', RuntimeWarning,
                      stacklevel=2)
        return np.full(len(counts), np.nan)
    with np.errstate(invalid='ignore', divide='ignore'):
        return counts / total


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray,
               targets: Sequence[float] = DEFAULT_FPRS) -> Dict[float, float]:
    """TPR at the ROC point whose FPR is nearest each target.

    insightface's rule: ``fpr, tpr = flipud(fpr), flipud(tpr)`` then
    ``min(zip(abs(fpr - target), range(len(fpr))))``, i.e. among the
    points at the smallest distance (compared exactly, in float64) the
    first of the flipped curve = the last of the ROC = the highest TPR.
    Use it on :func:`roc_curve`'s default (``drop_intermediate=True``)
    output to get insightface's numbers.
    """
    out = {}
    for t in targets:
        dist = np.abs(np.asarray(fpr) - t)
        out[t] = float(tpr[int(np.flatnonzero(dist == dist.min())[-1])])
    return out

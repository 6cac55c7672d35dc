"""IJB-B / IJB-C 1:1 template verification, vectorized.

The protocol (insightface ``eval_ijbc.py``; FORMATS.md §3): every image is
embedded with its horizontal flip and the two are summed; the sum is
L2-normalized and multiplied by the detector's face score; inside a template
the features of one media (frames of one video share a media id) are
averaged, the media features are summed, and the template feature is
L2-normalized; a pair's score is the cosine of its two template features; the
ROC runs over all pairs and TPR is reported at the ROC point whose FPR is
nearest to each target FPR.

Here the per-template Python loop becomes two scatter-adds over unique keys,
pair scoring is a chunked gather + row-wise dot product, and the ROC is one
sort.
"""
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
    # media of each image: unique (template, media) key; scatter-add rows
    mids0 = mids - mids.min()
    base = int(mids0.max()) + 1
    media_keys, media_of = np.unique(tids * base + mids0, return_inverse=True)
    media_of = torch.from_numpy(media_of.reshape(-1))
    media = torch.zeros(len(media_keys), feats.shape[1])
    media.index_add_(0, media_of, feats * weight[:, None])
    media /= torch.bincount(media_of, minlength=len(media_keys))[:, None]
    templates, tmpl_of = np.unique(media_keys // base, return_inverse=True)
    tmpl = torch.zeros(len(templates), feats.shape[1])
    tmpl.index_add_(0, torch.from_numpy(tmpl_of.reshape(-1)), media)
    tmpl = torch.nn.functional.normalize(tmpl, dim=1).numpy()
    return templates, tmpl.astype(np.float32)


def score_pairs(templates: np.ndarray, template_feats: np.ndarray,
                t1: np.ndarray, t2: np.ndarray,
                block: int = 2048) -> np.ndarray:
    """Cosine score of each pair ``(t1[i], t2[i])`` of template ids.

    ``templates`` must be sorted (as returned by :func:`template_pooling`).
    Pairs are grouped by their first template; for each block of ``block``
    first templates one matmul against all templates gives every score the
    block's pairs need (``block x T`` floats at a time: 190 MB for IJB-C's
    23,124 templates), then the pairs' scores are gathered from it. IJB pair
    lists reuse templates heavily (15.7M pairs over 23k templates), so this
    does far less memory traffic than gathering two feature rows per pair.

    Raises:
        KeyError: if a pair names a template that has no images; the
            argument is the first such pair index.
    """
    t1 = np.asarray(t1, np.int64)
    t2 = np.asarray(t2, np.int64)
    i1 = np.searchsorted(templates, t1)
    i2 = np.searchsorted(templates, t2)
    for idx, t in ((i1, t1), (i2, t2)):
        idx_c = np.minimum(idx, len(templates) - 1)
        bad = np.flatnonzero(templates[idx_c] != t)
        if bad.size:
            raise KeyError(int(bad[0]))
    feats = torch.from_numpy(np.ascontiguousarray(template_feats,
                                                  dtype=np.float32))
    order = np.argsort(i1, kind='stable')
    sorted_i1 = i1[order]
    scores = np.empty(len(t1), np.float32)
    for r0 in range(0, len(feats), block):
        lo, hi = np.searchsorted(sorted_i1, [r0, r0 + block])
        if lo == hi:
            continue
        sel = order[lo:hi]
        sim = (feats[r0:r0 + block] @ feats.T).numpy()
        scores[sel] = sim[i1[sel] - r0, i2[sel]]
    return scores


def roc_curve(scores: np.ndarray, labels: np.ndarray
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points at every distinct score (one sort).

    The points of ``sklearn.metrics.roc_curve(labels, scores,
    drop_intermediate=False)`` including the leading ``(0, 0)``. insightface
    calls it with the default ``drop_intermediate=True``, which removes
    collinear intermediate points; on horizontal and vertical ROC segments
    that never changes the TPR :func:`tpr_at_fpr` picks (a horizontal
    segment has one TPR; a vertical one keeps its top end), so the two agree
    unless several tied-score groups form an exactly collinear diagonal run.
    Returns ``(fpr, tpr, thresholds)``.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    # one (multi-threaded) descending sort
    s, order = torch.sort(torch.from_numpy(scores), descending=True,
                          stable=True)
    s, order = s.numpy(), order.numpy()
    y = labels[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    n_pos, n_neg = int(y.sum()), len(y) - int(y.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f'the ROC needs genuine and impostor pairs; got '
                         f'{n_pos} genuine and {n_neg} impostor pairs.')
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thr = np.r_[np.inf, s[last]]
    return fpr, tpr, thr


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray,
               targets: Sequence[float] = DEFAULT_FPRS) -> Dict[float, float]:
    """TPR at the ROC point whose FPR is nearest each target.

    Ties (several points at the nearest FPR distance) go to the highest TPR,
    as insightface's ``eval_ijbc.py`` does by flipping the ROC before its
    ``min((|fpr - target|, index))``.
    """
    out = {}
    for t in targets:
        dist = np.abs(np.asarray(fpr) - t)
        out[t] = float(tpr[int(np.flatnonzero(dist == dist.min())[-1])])
    return out

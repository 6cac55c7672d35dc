"""1:N identification and 1:1 verification against a distractor set.

The protocol of MegaFace challenge 1 (FaceScrub probe set, 1M distractors),
written for any ``(probe set, distractor set)`` of embeddings:

* **Probes** are images with identity labels; every identity has at least two
  images. Each probe image ``p`` is matched against every *other* image ``g``
  of its identity (the "gallery" image of that pair) hidden among the ``N``
  distractors.
* **Rank-r identification** (``rank1`` by default): over all *ordered*
  same-identity pairs ``(p, g)``, ``p != g``, the fraction for which fewer
  than ``r`` distractors score at least as high as the genuine image:
  ``#{d : s(p, d) >= s(p, g)} < r``. For rank 1 this is
  ``s(p, g) > max_d s(p, d)``. **Ties count as failures**: a distractor
  scoring exactly as high as the genuine image is ranked first (the
  conservative reading of "the genuine image must beat all distractors").
* **Verification** (``tpr@fpr1e-6`` …): genuine scores are the
  same-identity probe pairs, each unordered pair once (``i < j``; the score
  is symmetric, so counting both orders gives the same TPR); impostor
  scores are all ``P x N`` probe-distractor pairs. A pair is accepted iff
  ``score > t``. For a target FPR ``f`` with ``n = P * N`` impostors let
  ``m = floor(f * n)`` (the number of false accepts allowed) and ``t`` the
  ``(m + 1)``-th highest impostor score (``t = s_(m+1)`` in descending
  order). Then at most ``m`` impostors are accepted, i.e. the achieved FPR is
  ``<= f`` (lower when scores tie at ``t``), and ``t`` is the lowest impostor
  score with that property. ``TPR = #{genuine > t} / #genuine``. When
  ``f * n < 1`` (small sets) ``t`` is the highest impostor score: TPR is then
  the fraction of genuine pairs above every impostor (achieved FPR 0). The
  achieved FPR is returned too. (IJB-B/C instead take the ROC point nearest
  to the target; the "at most f" rule here never exceeds the target.)

Memory: ``P x N`` impostor scores (3,530 x 1M = 3.5e9 for MegaFace) are
never materialized. Distractors are processed in chunks of ``chunk``
columns; per chunk only the ``P x chunk`` score block exists, from which we
keep (a) the ``max(ranks)`` highest distractor scores of every probe and
(b) the ``k = floor(f * n) + 1`` highest impostor scores overall (``f`` the
largest requested FPR, which needs the most), merged with the running
buffer by ``torch.topk``. ``k <= ceil(f * n) + 1``: 3,531 floats for FPR
1e-6 on MegaFace, 3.5M for FPR 1e-3; above :data:`MAX_TOPK` it is an
error. The distractor features themselves (1M x 512 float32 = 2 GB) are
the dominant cost. Scores are float32 matrix products, so ``chunk`` (BLAS
blocking) can move a threshold by float32 round-off (~1e-7); rates change
only if a genuine score lies that close to a threshold.
"""
from decimal import Decimal
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

__all__ = ['identification_metrics', 'fpr_key', 'threshold_at_fpr',
           'num_false_accepts_allowed', 'same_identity_pairs']

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]

#: Upper bound on the impostor top-k buffer (floats); 2**27 = 512 MB.
MAX_TOPK = 2**27


def fpr_key(fpr: float) -> str:
    """Compact scientific spelling used in metric keys: ``1e-6``, ``2.5e-4``.

    Matches the ``tar@far1e-3`` key of :class:`VerificationMetric`.
    """
    mant, exp = f'{float(fpr):.15e}'.split('e')
    mant = mant.rstrip('0').rstrip('.')
    return f'{mant}e{int(exp)}'


def num_false_accepts_allowed(fpr: float, n_impostors: int) -> int:
    """``m = floor(fpr * n_impostors)``, exact for decimal-written FPRs
    (``1e-6 * 3_530_000_000`` is 3530, not 3529 by float rounding)."""
    if not 0.0 < fpr <= 1.0:
        raise ValueError(f'FPR target {fpr} must be in (0, 1].')
    return min(int(Decimal(repr(float(fpr))) * int(n_impostors)),
               int(n_impostors))


def threshold_at_fpr(top_scores_desc: torch.Tensor, fpr: float,
                     n_impostors: int):
    """Threshold and achieved FPR from the highest impostor scores.

    Args:
        top_scores_desc (Tensor): the highest impostor scores in descending
            order; at least ``floor(fpr * n_impostors) + 1`` of them (or all).
        fpr (float): target FPR.
        n_impostors (int): total number of impostor scores.

    Returns:
        tuple: ``(t, achieved_fpr)`` where ``t`` is the ``(m + 1)``-th
        highest impostor score, ``m = floor(fpr * n_impostors)``; accept iff
        ``score > t``.
    """
    m = num_false_accepts_allowed(fpr, n_impostors)
    if m >= n_impostors:  # fpr == 1: accept everything
        return float('-inf'), 1.0
    if top_scores_desc.numel() < m + 1:
        raise ValueError(f'need the {m + 1} highest impostor scores, got '
                         f'{top_scores_desc.numel()}')
    t = top_scores_desc[m]
    n_fa = int((top_scores_desc[:m] > t).sum())
    return float(t), n_fa / n_impostors


def _feats(x: ArrayLike, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(
        np.asarray(x, dtype=np.float32))
    t = t.detach().to('cpu', torch.float32)
    if t.ndim != 2:
        raise ValueError(f'{name} must be a 2-D (num, dim) array, got shape '
                         f'{tuple(t.shape)}')
    if not torch.isfinite(t).all():
        raise ValueError(f'{name} contains NaN or Inf values.')
    return t.contiguous()


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _merge_topk(buf: Optional[torch.Tensor], new: torch.Tensor,
                k: int) -> torch.Tensor:
    both = new if buf is None else torch.cat([buf, new])
    if both.numel() <= k:
        return both
    return torch.topk(both, k, sorted=False).values


def same_identity_pairs(probes: torch.Tensor, ids: np.ndarray,
                        device: Optional[str] = None
                        ) -> Dict[str, torch.Tensor]:
    """Genuine scores of the probes, one identity (Gram matrix) at a time.

    Args:
        probes (Tensor): ``(P, D)`` probe features (already normalized if
            cosine scores are wanted).
        ids (np.ndarray): ``(P,)`` identity labels.
        device (str, optional): where the Gram matrices are computed.

    Returns:
        dict: ``rows`` / ``scores`` — probe index and score of every
        ordered same-identity pair ``(p, g)``, ``p != g``; ``pairs``
        ``(M, 2)`` / ``pair_scores`` — every unordered pair (``i < j``)
        once; both identity by identity (labels sorted, stable order).
        ``num_identities``: the number of distinct labels. The tensors are
        empty when no identity has two images.
    """
    dev = torch.device(device) if device else torch.device('cpu')
    _, labels = np.unique(ids, return_inverse=True)
    labels = labels.reshape(-1)
    order = np.argsort(labels, kind='stable')
    groups = np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)
    rows, scores, pairs, pair_scores = [], [], [], []
    for grp in groups:
        if len(grp) < 2:
            continue
        g = torch.from_numpy(grp)
        feats = probes[g].to(dev)
        gram = (feats @ feats.T).cpu()
        off = ~torch.eye(len(grp), dtype=torch.bool)
        ii = torch.arange(len(grp)).unsqueeze(1).expand(-1, len(grp))
        rows.append(g[ii[off]])  # probe index of each ordered pair
        scores.append(gram[off])
        upper = torch.triu(torch.ones_like(off), 1)
        pairs.append(torch.stack([g[ii[upper]], g[ii.T[upper]]], 1))
        pair_scores.append(gram[upper])
    if not rows:
        index = torch.empty(0, dtype=torch.long)
        empty = torch.empty(0, dtype=probes.dtype)
        return dict(rows=index, scores=empty, pairs=index.reshape(0, 2),
                    pair_scores=empty, num_identities=len(groups))
    return dict(rows=torch.cat(rows), scores=torch.cat(scores),
                pairs=torch.cat(pairs), pair_scores=torch.cat(pair_scores),
                num_identities=len(groups))


def identification_metrics(probe_feats: ArrayLike,
                           probe_ids: ArrayLike,
                           distractor_feats: ArrayLike,
                           fprs: Sequence[float] = (1e-6, ),
                           ranks: Sequence[int] = (1, ),
                           chunk: int = 4096,
                           normalize: bool = True,
                           device: Optional[str] = None
                           ) -> Dict[str, float]:
    """MegaFace-style rank-r identification and TPR at FPR (see module doc).

    Args:
        probe_feats: ``(P, D)`` probe embeddings.
        probe_ids: ``(P,)`` identity labels (ints or strings); each identity
            with a single image contributes no pair.
        distractor_feats: ``(N, D)`` distractor embeddings.
        fprs: target FPRs for ``tpr@fpr<f>``. Defaults to ``(1e-6,)``.
        ranks: ranks for ``rank<r>``. Defaults to ``(1,)``.
        chunk (int): distractors scored at once; peak extra memory is about
            ``P * chunk`` float32 scores (3,530 x 4,096 = 58 MB).
        normalize (bool): L2-normalize the features first, so scores are
            cosine similarities. Defaults to True.
        device (str, optional): where to compute the score blocks (e.g.
            ``'cuda'``); features are moved one chunk at a time.

    Returns:
        dict: fractions in [0, 1]: ``rank<r>``, ``tpr@fpr<f>`` (key spelled
        by :func:`fpr_key`), plus ``threshold@fpr<f>`` (cosine threshold
        ``t``), ``fpr@fpr<f>`` (achieved FPR), ``num_probes``,
        ``num_identities``, ``num_distractors``, ``num_rank_pairs``
        (ordered pairs), ``num_genuine`` (unordered pairs),
        ``num_impostors``.
    """
    probes = _feats(probe_feats, 'probe_feats')
    dis = _feats(distractor_feats, 'distractor_feats')
    ids = np.asarray(probe_ids.cpu() if isinstance(probe_ids, torch.Tensor)
                     else probe_ids)
    if ids.ndim != 1 or len(ids) != len(probes):
        raise ValueError(f'probe_ids must be 1-D with one label per probe '
                         f'({len(probes)}), got shape {ids.shape}')
    if len(dis) == 0:
        raise ValueError('the distractor set is empty.')
    if probes.shape[1] != dis.shape[1]:
        raise ValueError(f'probe dim {probes.shape[1]} != distractor dim '
                         f'{dis.shape[1]}')
    ranks = sorted({int(r) for r in ranks})
    if not ranks or ranks[0] < 1:
        raise ValueError(f'ranks must be >= 1, got {ranks}')
    fprs = [float(f) for f in fprs]
    if chunk < 1:
        raise ValueError(f'chunk must be >= 1, got {chunk}')
    if normalize:
        probes, dis = _normalize(probes), _normalize(dis)
    dev = torch.device(device) if device else torch.device('cpu')

    # genuine scores: per identity, the within-identity Gram matrix
    pairs = same_identity_pairs(probes, ids, device)
    if not pairs['rows'].numel():
        raise ValueError('no identity has two or more probe images; '
                         'identification needs same-identity pairs.')
    rows, scores = pairs['rows'], pairs['scores']
    genuine = pairs['pair_scores']
    n_ids = pairs['num_identities']

    # one pass over the distractors
    n_probe, n_dis = len(probes), len(dis)
    n_imp = n_probe * n_dis
    k_imp = max(num_false_accepts_allowed(f, n_imp) + 1 for f in fprs) \
        if fprs else 0
    k_imp = min(k_imp, n_imp)
    if k_imp > MAX_TOPK:
        raise ValueError(
            f'FPR {max(fprs)} over {n_imp} impostor pairs needs the {k_imp} '
            f'highest impostor scores in memory (limit {MAX_TOPK}); ask for '
            'a smaller FPR or use fewer probes/distractors.')
    r_max = min(ranks[-1], n_dis)
    per_probe = None  # (P, r_max) highest distractor scores of each probe
    top_imp = None  # the k_imp highest impostor scores (unsorted)
    p_dev = probes.to(dev)
    for s in range(0, n_dis, chunk):
        block = p_dev @ dis[s:s + chunk].to(dev).T  # (P, c)
        v = torch.topk(block, min(r_max, block.shape[1]), dim=1).values
        v = v if per_probe is None else torch.cat([per_probe, v], 1)
        per_probe = torch.topk(v, min(r_max, v.shape[1]), dim=1).values
        if k_imp:
            flat = block.reshape(-1)
            new = torch.topk(flat, min(k_imp, flat.numel()),
                             sorted=False).values
            top_imp = _merge_topk(top_imp, new, k_imp)
    per_probe = per_probe.cpu()

    out: Dict[str, float] = {}
    for r in ranks:
        if r > n_dis:  # fewer distractors than r: always within rank r
            out[f'rank{r}'] = 1.0
            continue
        thr = per_probe[rows, r - 1]
        out[f'rank{r}'] = float((scores > thr).double().mean())
    if fprs:
        top_desc = torch.sort(top_imp.cpu(), descending=True).values
        for f in fprs:
            t, achieved = threshold_at_fpr(top_desc, f, n_imp)
            key = fpr_key(f)
            out[f'tpr@fpr{key}'] = float((genuine > t).double().mean())
            out[f'threshold@fpr{key}'] = t
            out[f'fpr@fpr{key}'] = achieved
    out.update(num_probes=n_probe, num_identities=n_ids,
               num_distractors=n_dis, num_rank_pairs=int(rows.numel()),
               num_genuine=int(genuine.numel()), num_impostors=n_imp)
    return out

r"""Grouped Knowledge Distillation (GKD).

Implements `Grouped Knowledge Distillation for Deep Face Recognition
<https://arxiv.org/abs/2304.04462>`_ (Zhao et al., AAAI 2023) and the variants
of the authors' public code (``WisonZ/GKD``), see ``docs/PAPERS.md`` §1.

Symbols follow the paper: :math:`C` classes, logits :math:`z`, temperature
:math:`T`, softened prediction :math:`p = \mathrm{softmax}(z / T)`, primary
group :math:`\Phi` (top-:math:`k` classes of the ranking network), secondary
group :math:`\Psi = U \setminus \Phi`, threshold :math:`\tau`.

Every equation lives in one helper:

* eq. 2-3 (per-sample :math:`k`): :func:`select_primary_k`;
* the authors' batch-level :math:`k`: :func:`select_batch_k`;
* :math:`\Phi` as a mask (+ forced target): :func:`primary_group_mask`;
* eq. 5, 6, 9 (within-group and binary KLs): :func:`grouped_kl_terms`;
* eq. 11 (weighted sum): :class:`GKDLoss`.

Implementation notes (speed, numerics):

* :math:`k` is found without sorting the :math:`C` classes: an exact top-64
  head resolves peaked rows; for the others a strided column sample gives a
  value band that contains the crossing point, the exact mass above the band
  is one masked sum, and only the band is extracted and (recursively) refined,
  so the sorted cumulative sum is only ever materialised near :math:`\tau`.
* :math:`\Phi` is a boolean mask built by one comparison against the value of
  the :math:`k`-th ranked class (ties are resolved with an exact top-k).
* :func:`grouped_kl_terms` is a fused autograd function: the exponentials
  :math:`e^{z/T - \max}` of both networks are computed once (and shared with
  the ranking), every group quantity is a masked sum in log space
  (``log-sum-exp`` with a per-group shift where needed, so an empty or
  underflowing group never yields NaN/inf), and the backward pass writes the
  analytic gradient in place, so one call materialises about four
  :math:`B \times C` float tensors in total.
"""
import math
from typing import Dict, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from mmfacekd.registry import MODELS

__all__ = [
    'GKDLoss', 'GroupedKLTerms', 'SoftmaxStats', 'softmax_stats',
    'select_primary_k', 'select_batch_k', 'primary_group_mask',
    'grouped_kl_terms'
]

# --------------------------------------------------------------------------
# Shared softmax statistics
# --------------------------------------------------------------------------


class SoftmaxStats(NamedTuple):
    """Row statistics of :math:`\\mathrm{softmax}(z / T)`.

    ``exp[b, c] = exp(z[b, c] / T - shift[b])`` with ``shift = max(z) / T``,
    ``sumexp = exp.sum(1)``, hence ``softmax = exp / sumexp`` and
    ``logsumexp(z / T) = shift + log(sumexp)``.
    """
    shift: Tensor
    exp: Tensor
    sumexp: Tensor


def softmax_stats(logits: Tensor,
                  temperature: float = 1.0,
                  out: Optional[Tensor] = None) -> SoftmaxStats:
    """Compute :class:`SoftmaxStats` of ``logits / temperature`` (no grad).

    Args:
        logits (Tensor): Logits of shape (B, C).
        temperature (float): The temperature :math:`T`. Defaults to 1.0.
        out (Tensor, optional): A (B, C) buffer for the exponentials.
            Defaults to None.

    Returns:
        SoftmaxStats: The statistics.
    """
    with torch.no_grad():
        z = logits.detach()
        zmax = z.amax(dim=1, keepdim=True)
        e = torch.sub(z, zmax, out=out) if out is not None else z - zmax
        if temperature != 1.0:
            e.mul_(1.0 / temperature)
        e.exp_()
        return SoftmaxStats(zmax.squeeze(1) / temperature, e, e.sum(dim=1))


# --------------------------------------------------------------------------
# Exact position of a cumulative-weight crossing without a full sort
# --------------------------------------------------------------------------

_SORT_LIMIT = 2048  # rows at most this wide are simply sorted
_SAMPLE = 2048  # strided column sample used to place the band
_Z_SCORE = 4.0  # band half-width in standard errors of the estimate
_MAX_DEPTH = 6


class _Window(NamedTuple):
    """A stretch of a row's descending order that contains a crossing.

    ``values``/``index``: (R, w) descending values and their column indices
    (``-inf`` padded); ``cum``: (R, w) cumulative weight of the sorted row up
    to each entry (pads repeat the last value); ``n_above``/``c_above``: (R,)
    number and weight of the row's elements ranked before the window.
    """
    values: Tensor
    index: Tensor
    cum: Tensor
    n_above: Tensor
    c_above: Tensor


def _gather_weights(weights: Optional[Tensor], index: Optional[Tensor],
                    values: Tensor) -> Tensor:
    if weights is None:  # count mode: every finite value weighs one
        return torch.isfinite(values).to(torch.float64)
    return weights.gather(1, index)


def _descending_window(values: Tensor,
                       weights: Optional[Tensor],
                       need: Tensor,
                       total: Tensor,
                       scratch: Optional[Tensor] = None,
                       depth: int = 0) -> _Window:
    """Locate, per row, where the descending cumulative weight reaches
    ``need`` without sorting whole rows.

    Narrow rows are sorted. Wider rows get a value band from a strided
    sample (:func:`_band_thresholds`); the weight above the band is one
    exact masked sum, the band is extracted (``nonzero``) into a small padded
    array and the search recurses into it.

    Args:
        values (Tensor): (R, n) ranking values; ``-inf`` entries are padding.
        weights (Tensor, optional): (R, n) non-negative weights aligned with
            ``values``, non-increasing in the value within a row (softmax
            numerators); None counts elements.
        need (Tensor): (R,) target cumulative weight, ``0 < need <= total``.
        total (Tensor): (R,) exact total weight of each row.
        scratch (Tensor, optional): (R, n) float buffer for masked sums.
        depth (int): Recursion depth.

    Returns:
        _Window: A window whose ``cum`` reaches ``need`` (when ``total``
        does).
    """
    rows_n, n = values.shape
    if n <= _SORT_LIMIT or depth >= _MAX_DEPTH:
        sv, si = values.sort(dim=1, descending=True)
        cum = _gather_weights(weights, si, sv).cumsum(dim=1)
        return _Window(
            sv, si, cum,
            torch.zeros(rows_n, dtype=torch.long, device=values.device),
            cum.new_zeros(rows_n))
    return _band_window(values, weights, need, total, scratch, depth)


def _band_thresholds(values: Tensor, weights: Optional[Tensor], need: Tensor,
                     total: Tensor, z_score: float) -> Tuple[Tensor, Tensor]:
    """Estimate a value band ``[lo, hi]`` that contains the crossing.

    A strided column sample estimates (Horvitz-Thompson) the weight *below*
    a value; its target ``total - need`` is exact and the estimate's
    variance only involves the small weights below the crossing, so heavy
    tails (a few dominant classes, never sampled) cost nothing: the band
    then simply reaches up to ``hi = +inf``. Elements ``> hi`` are "above";
    the band is ``lo <= x <= hi``. ``z_score`` sets the safety margin.
    """
    _, n = values.shape
    stride = max(n // _SAMPLE, 1)
    sv = values[:, ::stride]
    keep = torch.isfinite(sv)
    sw = keep.to(torch.float64) if weights is None \
        else weights[:, ::stride] * keep
    sv, order = sv.sort(dim=1, descending=True)
    sw = sw.gather(1, order)
    n_keep = keep.sum(dim=1).clamp(min=1).to(sw.dtype)
    # Sample weight strictly below each sorted position.
    below = sw.flip(1).cumsum(1).flip(1) - sw
    below2 = (sw * sw).flip(1).cumsum(1).flip(1) - sw * sw
    target = total - need  # exact weight below the crossing (+- 1 element)
    est = stride * below
    n_s = sv.size(1)
    p_star = (est > target.unsqueeze(1)).sum(dim=1).clamp(max=n_s - 1)
    s1 = below.gather(1, p_star.unsqueeze(1)).squeeze(1)
    s2 = below2.gather(1, p_star.unsqueeze(1)).squeeze(1)
    var = (s2 - s1 * s1 / n_keep).clamp(min=0)
    gran = sw.gather(1, p_star.unsqueeze(1)).squeeze(1)
    delta = stride * (z_score * var.sqrt() + 2 * gran)
    # hi: lowest sample value whose estimated weight at-or-below exceeds
    # target + delta, so that the weight above hi stays below need.
    incl = est + stride * sw
    q_hi = (incl >= (target + delta).unsqueeze(1)).sum(dim=1) - 1
    hi = sv.gather(1, q_hi.clamp(min=0).unsqueeze(1)).squeeze(1)
    hi = torch.where((q_hi >= 0) & torch.isfinite(hi), hi,
                     torch.full_like(hi, float('inf')))
    # lo: highest sample value with estimated weight strictly below it at
    # most target - delta, so that the weight at-or-above lo reaches need.
    q_lo = (est > (target - delta).unsqueeze(1)).sum(dim=1)
    lo = sv.gather(1, q_lo.clamp(max=n_s - 1).unsqueeze(1)).squeeze(1)
    lo_ok = (q_lo < n_s) & torch.isfinite(lo) & (target - delta > 0)
    lo = torch.where(lo_ok, lo,
                     torch.full_like(lo, torch.finfo(values.dtype).min))
    return torch.minimum(lo, hi), hi


def _band_window(values: Tensor, weights: Optional[Tensor], need: Tensor,
                 total: Tensor, scratch: Optional[Tensor],
                 depth: int) -> _Window:
    """Place a band by sampling, verify it with exact masked sums, extract
    it and recurse (see :func:`_descending_window`)."""
    rows_n, n = values.shape
    device = values.device
    lowest = torch.finfo(values.dtype).min
    cdtype = torch.float64 if weights is None else weights.dtype
    lo, hi = _band_thresholds(values, weights, need, total, _Z_SCORE)
    for attempt in range(3):
        band = values >= lo.unsqueeze(1)
        if bool(torch.isfinite(hi).any()):
            above = values > hi.unsqueeze(1)
            band.logical_xor_(above)  # lo <= x <= hi (above is in band)
            n_above = above.sum(dim=1)
            if weights is None:
                c_above = n_above.to(torch.float64)
            else:
                buf = scratch if scratch is not None \
                    else torch.empty_like(weights)
                c_above = torch.mul(weights, above, out=buf).sum(dim=1)
            del above
        else:  # no row has elements above its band
            n_above = torch.zeros(rows_n, dtype=torch.long, device=device)
            c_above = torch.zeros(rows_n, dtype=cdtype, device=device)
        r_idx, c_idx = band.nonzero(as_tuple=True)
        del band
        b_val = values[r_idx, c_idx]
        if weights is None:
            b_w = None
            b_mass = torch.bincount(r_idx, minlength=rows_n).to(torch.float64)
        else:
            b_w = weights[r_idx, c_idx]
            b_mass = c_above.new_zeros(rows_n).index_add_(0, r_idx, b_w)
        fail_hi = c_above >= need
        fail_lo = c_above + b_mass < need
        if attempt == 2 or not bool((fail_hi | fail_lo).any()):
            break
        # Widen the band where the estimate missed: first a 3x wider
        # margin, then the always-valid bounds.
        if attempt == 0:
            lo2, hi2 = _band_thresholds(values, weights, need, total,
                                        3 * _Z_SCORE)
        else:
            lo2 = torch.full_like(lo, lowest)
            hi2 = torch.full_like(hi, float('inf'))
        hi = torch.where(fail_hi, torch.maximum(hi2, hi), hi)
        lo = torch.minimum(torch.where(fail_lo, torch.minimum(lo2, lo), lo),
                           hi)
    # Pack the ragged band into a padded (R, width) array.
    counts = torch.bincount(r_idx, minlength=rows_n)
    width = max(int(counts.max()), 1)
    starts = counts.cumsum(0) - counts
    pos = torch.arange(r_idx.numel(), device=device) - starts[r_idx]
    p_val = values.new_full((rows_n, width), float('-inf'))
    p_val[r_idx, pos] = b_val
    p_idx = torch.zeros((rows_n, width), dtype=torch.long, device=device)
    p_idx[r_idx, pos] = c_idx
    if weights is None:
        p_w = None
    else:
        p_w = weights.new_zeros((rows_n, width))
        p_w[r_idx, pos] = b_w
    # A band that does not halve the width (massive ties) is sorted.
    sub_depth = depth + 1 if 2 * width <= n else _MAX_DEPTH
    sub = _descending_window(p_val, p_w, need - c_above, b_mass, None,
                             sub_depth)
    return _Window(sub.values, p_idx.gather(1, sub.index),
                   sub.cum + c_above.unsqueeze(1), sub.n_above + n_above,
                   sub.c_above + c_above)


# --------------------------------------------------------------------------
# Eq. 2-3: the primary group size k
# --------------------------------------------------------------------------


def _per_sample_k(ranking_logits: Tensor, tau: float, stats: SoftmaxStats,
                  scratch: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    """Eq. 3 per row, plus the value/index of the k-th ranked class
    (index -1 when unknown)."""
    r = ranking_logits.detach()
    rows_n, num_classes = r.shape
    device = r.device
    full_k = torch.full((rows_n, ), num_classes, dtype=torch.long,
                        device=device)
    if tau >= 1.0:  # only U itself has mass exactly 1: Phi = U, Psi empty
        return (full_k, r.new_full((rows_n, ), float('-inf')),
                torch.full_like(full_k, -1))
    total = stats.sumexp
    need = total * tau
    win = _descending_window(r, stats.exp, need, total, scratch)
    cum = win.cum
    width = cum.size(1)
    found = cum[:, -1] >= need
    pos = (cum < need.unsqueeze(1)).sum(dim=1).clamp(max=width - 1)
    c_j = cum.gather(1, pos.unsqueeze(1)).squeeze(1)
    c_prev = cum.gather(1, (pos - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    c_prev = torch.where(pos > 0, c_prev, win.c_above)
    has_prev = (pos > 0) | (win.n_above > 0)
    # argmin_k |c_k - tau|, first minimum: take k-1 on a tie, and go back to
    # the start of a plateau of equal cumulative sums.
    take_prev = has_prev & ((need - c_prev) <= (c_j - need))
    plateau = (cum < c_prev.unsqueeze(1)).sum(dim=1)
    k_prev = torch.where(pos > 0, win.n_above + plateau + 1, win.n_above)
    k = torch.where(take_prev, k_prev, win.n_above + pos + 1)
    k = torch.where(found, k, full_k)
    rel = k - win.n_above - 1
    in_win = found & (rel >= 0)
    rel_c = rel.clamp(min=0).unsqueeze(1)
    kth_val = win.values.gather(1, rel_c).squeeze(1)
    kth_idx = win.index.gather(1, rel_c).squeeze(1)
    # k-th class just above the window: Phi = {x > first window value}.
    above_thr = torch.nextafter(win.values[:, 0],
                                win.values.new_tensor(float('inf')))
    kth_val = torch.where(in_win, kth_val, above_thr)
    kth_val = torch.where(found, kth_val, torch.full_like(kth_val,
                                                          float('-inf')))
    kth_idx = torch.where(in_win, kth_idx, torch.full_like(kth_idx, -1))
    return k, kth_val, kth_idx


def select_primary_k(ranking_logits: Tensor,
                     tau: float = 0.93,
                     temperature: float = 1.0,
                     stats: Optional[SoftmaxStats] = None) -> Tensor:
    r"""Per-sample primary group size, eq. 2-3 of the GKD paper.

    With :math:`\tilde{p} = \mathrm{softmax}(z / T)` of the ranking network
    sorted in descending order,

    .. math::
        k = \mathop{\arg\min}_{k \in \{1, \dots, C\}}
        \left| \sum_{i=1}^{k} \tilde{p}_i - \tau \right|

    (first minimum on ties). :math:`\tau \geq 1` gives :math:`k = C`
    (:math:`\Phi = U`, :math:`\Psi = \emptyset`), since only the full set has
    mass exactly 1; so does a row whose floating-point mass never reaches
    :math:`\tau`. The rows are not sorted: see :func:`_descending_window`.

    Args:
        ranking_logits (Tensor): Logits (B, C) of the ranking network (the
            student in the paper).
        tau (float): The threshold :math:`\tau \in (0, 1]`.
            Defaults to 0.93.
        temperature (float): Temperature of the softened prediction.
            Defaults to 1.0.
        stats (SoftmaxStats, optional): Precomputed statistics of
            ``ranking_logits / temperature``. Defaults to None.

    Returns:
        Tensor: ``k`` of shape (B, ), dtype long.
    """
    with torch.no_grad():
        if stats is None:
            stats = softmax_stats(ranking_logits, temperature)
        return _per_sample_k(ranking_logits, tau, stats, None)[0]


def select_batch_k(ranking_logits: Tensor,
                   tau: float = 0.93,
                   step: int = 100,
                   stats: Optional[SoftmaxStats] = None) -> int:
    r"""One primary group size per batch, as the authors' adaptive code.

    The softmax (at :math:`T = 1`) of the ranking network is summed over the
    batch, sorted in descending order, and :math:`k` is the smallest value
    on the grid :math:`\{1, 1 + s, 1 + 2s, \dots\} \cap [1, C)` whose
    cumulative mass reaches :math:`\tau B`; :math:`C` if none does (the
    authors' loop would fail there).

    Args:
        ranking_logits (Tensor): Logits (B, C) of the ranking network.
        tau (float): The threshold :math:`\tau`. Defaults to 0.93.
        step (int): Grid step :math:`s`. Defaults to 100.
        stats (SoftmaxStats, optional): Precomputed statistics of
            ``ranking_logits`` at temperature 1. Defaults to None.

    Returns:
        int: The batch-level ``k``.
    """
    with torch.no_grad():
        rows_n, num_classes = ranking_logits.shape
        if stats is not None:
            inv = (1.0 / stats.sumexp).unsqueeze(0)
            mass = torch.matmul(inv, stats.exp).squeeze(0)
        else:
            mass = torch.softmax(ranking_logits.detach(), dim=1).sum(dim=0)
        cum = mass.sort(descending=True)[0].cumsum(0)
        grid = torch.arange(1, num_classes, step, device=cum.device)
        hit = (cum[grid - 1] >= tau * rows_n).nonzero()
        return int(grid[hit[0, 0]]) if hit.numel() else num_classes


def _kth_largest(ranking_logits: Tensor,
                 k: Tensor) -> Tuple[Tensor, Tensor]:
    """Value and column of the k-th largest entry per row (count mode)."""
    r = ranking_logits.detach()
    rows_n, num_classes = r.shape
    need = k.to(torch.float64)
    total = torch.full((rows_n, ), float(num_classes), dtype=torch.float64,
                       device=r.device)
    win = _descending_window(r, None, need, total)
    rel = (k - win.n_above - 1).clamp(min=0).unsqueeze(1)
    return (win.values.gather(1, rel).squeeze(1),
            win.index.gather(1, rel).squeeze(1))


def _mask_from_threshold(ranking_logits: Tensor, k: Tensor, kth_val: Tensor,
                         kth_idx: Tensor,
                         gt_label: Optional[Tensor]) -> Tensor:
    r = ranking_logits.detach()
    mask = r >= kth_val.unsqueeze(1)
    count = mask.sum(dim=1)
    tie_rows = (count != k).nonzero().squeeze(1)
    if tie_rows.numel():  # ties at the k-th value: exact top-k per row
        kth_idx = kth_idx.clone()
        for row in tie_rows.tolist():
            kk = int(k[row])
            top = r[row].topk(kk).indices
            mask[row] = False
            mask[row, top] = True
            kth_idx[row] = top[-1] if kk > 0 else -1
    if gt_label is not None:
        gt = gt_label.reshape(-1, 1).long()
        miss = (~mask.gather(1, gt).squeeze(1)).nonzero().squeeze(1)
        if miss.numel():
            low = kth_idx[miss]
            unknown = low < 0
            if bool(unknown.any()):
                rr = miss[unknown]
                sub = r[rr].masked_fill(~mask[rr], float('inf'))
                low = low.clone()
                low[unknown] = sub.argmin(dim=1)
            mask[miss, low] = False
            mask[miss, gt[miss, 0]] = True
    return mask


def primary_group_mask(ranking_logits: Tensor,
                       k: Union[int, Tensor],
                       gt_label: Optional[Tensor] = None) -> Tensor:
    r"""Boolean mask of the primary group :math:`\Phi` (eq. 2).

    :math:`\Phi` holds the top-:math:`k` classes of ``ranking_logits`` (any
    temperature gives the same order). With ``gt_label`` the ground-truth
    class is forced into :math:`\Phi` **without changing its size**: if it
    is not among the top-:math:`k`, it replaces the :math:`k`-th ranked
    class, i.e. :math:`\Phi = \mathrm{top}_{k-1} \cup \{y\}`. This equals the
    authors' ``scatter(target, 999999)`` followed by a top-:math:`k`.

    Args:
        ranking_logits (Tensor): Logits (B, C) of the ranking network.
        k (int | Tensor): Group size, scalar or (B, ); clipped to [1, C].
        gt_label (Tensor, optional): Labels (B, ) to force into
            :math:`\Phi`. Defaults to None.

    Returns:
        Tensor: Bool mask of shape (B, C) with exactly ``k`` True per row.
    """
    with torch.no_grad():
        rows_n, num_classes = ranking_logits.shape
        k = torch.as_tensor(k, device=ranking_logits.device).long()
        k = k.expand(rows_n).clamp(1, num_classes).contiguous()
        full = k >= num_classes
        if bool(full.all()):
            return torch.ones_like(ranking_logits, dtype=torch.bool)
        kth_val, kth_idx = _kth_largest(ranking_logits, k)
        kth_val = torch.where(full, torch.full_like(kth_val, float('-inf')),
                              kth_val)
        return _mask_from_threshold(ranking_logits, k, kth_val, kth_idx,
                                    gt_label)


# --------------------------------------------------------------------------
# Eq. 5, 6, 9: within-group and binary KL terms (fused autograd function)
# --------------------------------------------------------------------------


class GroupedKLTerms(NamedTuple):
    """Per-sample outputs of :func:`grouped_kl_terms`, each of shape (B, ).

    ``primary_kd`` = KL(p̂^T‖p̂^S), ``secondary_kd`` = KL(p̌^T‖p̌^S),
    ``binary_kd`` = KL(p_b^T‖p_b^S); ``p_phi_t`` / ``p_psi_t`` = primary /
    secondary mass of the teacher, ``p_phi_s`` = primary mass of the student
    (no gradient through the masses).
    """
    primary_kd: Tensor
    secondary_kd: Tensor
    binary_kd: Tensor
    p_phi_t: Tensor
    p_psi_t: Tensor
    p_phi_s: Tensor


_SHARE_LIMIT = 2.0**-10  # below: a group sum is not taken as a difference


def _group_sums(e: Tensor, total: Tensor, mask: Tensor, scratch: Tensor,
                direct_phi: bool) -> Tensor:
    """(B, 2) sums of ``e`` over Phi (column 0) and Psi (column 1).

    One group is a masked sum, the other the difference to ``total``; rows
    where that difference would cancel (share < ``_SHARE_LIMIT``) get a
    direct masked sum as well.
    """
    zero = e.new_zeros(())
    if direct_phi:
        direct = torch.where(mask, e, zero, out=scratch).sum(dim=1)
    else:
        direct = torch.where(mask, zero, e, out=scratch).sum(dim=1)
    other = total - direct
    risky = (other < _SHARE_LIMIT * total).nonzero().squeeze(1)
    if risky.numel():
        m = mask.index_select(0, risky)
        if direct_phi:
            m = ~m
        other[risky] = torch.where(m, e.index_select(0, risky), zero).sum(1)
    pair = (direct, other) if direct_phi else (other, direct)
    return torch.stack(pair, dim=1)


def _cross_sums(s: Tensor, t: Tensor, et: Tensor, mask: Tensor,
                scratch: Tensor, z_t: Tensor) -> Tensor:
    """(B, 2) group sums of ``e^T_i (t_i - s_i)`` (Phi, Psi).

    The group holding less teacher mass in most rows is summed directly and
    the other one is the difference to the total; rows where that
    difference would cancel get a direct sum.
    """
    share_phi = z_t[:, 0] / z_t.sum(dim=1)
    direct_phi = bool((share_phi < 0.5).float().mean() >= 0.5)
    x = torch.sub(t, s, out=scratch).mul_(et)
    total = x.sum(dim=1)
    direct = x.mul_(mask if direct_phi else ~mask).sum(dim=1)
    other = total - direct
    share_other = (1 - share_phi) if direct_phi else share_phi
    risky = (share_other < _SHARE_LIMIT).nonzero().squeeze(1)
    if risky.numel():
        m = mask.index_select(0, risky)
        if direct_phi:
            m = ~m
        xr = (t.index_select(0, risky) - s.index_select(0, risky)) \
            * et.index_select(0, risky)
        other[risky] = (xr * m).sum(dim=1)
    pair = (direct, other) if direct_phi else (other, direct)
    return torch.stack(pair, dim=1)


def _regroup_rows(rows: Tensor, z: Tensor, temperature: float, e: Tensor,
                  mask: Tensor, sums: Tensor, shift: Tensor) -> None:
    """Recompute rows of ``e`` with one shift per group (its own max), for
    groups whose sum underflows with the row-max shift."""
    zr = z.index_select(0, rows) / temperature
    m = mask.index_select(0, rows)
    neg_inf = float('-inf')
    mx_phi = zr.masked_fill(~m, neg_inf).amax(dim=1)
    mx_psi = zr.masked_fill(m, neg_inf).amax(dim=1)
    mx_phi = torch.where(torch.isfinite(mx_phi), mx_phi,
                         torch.zeros_like(mx_phi))
    mx_psi = torch.where(torch.isfinite(mx_psi), mx_psi,
                         torch.zeros_like(mx_psi))
    er = (zr - torch.where(m, mx_phi.unsqueeze(1),
                           mx_psi.unsqueeze(1))).exp_()
    e[rows] = er
    sums[rows] = torch.stack([(er * m).sum(dim=1), (er * ~m).sum(dim=1)], 1)
    shift[rows] = torch.stack([mx_phi, mx_psi], dim=1)


class _GroupedKLFunction(torch.autograd.Function):
    """Fused eq. 5, 6, 9 with an analytic, in-place backward."""

    @staticmethod
    def forward(ctx, student: Tensor, teacher: Tensor, mask: Tensor,
                temperature: float, s_stats: Optional[SoftmaxStats],
                t_stats: Optional[SoftmaxStats], scratch: Optional[Tensor],
                n_phi: Optional[Tensor]) -> Tuple[Tensor, ...]:
        in_dtype = student.dtype
        dtype = torch.float32 if in_dtype in (torch.float16,
                                              torch.bfloat16) else in_dtype
        s = student.detach().to(dtype)
        t = teacher.detach().to(dtype)
        mask = mask.to(torch.bool)
        num_classes = s.size(1)
        if s_stats is None:
            s_stats = softmax_stats(s, temperature)
        if t_stats is None:
            t_stats = softmax_stats(t, temperature)
        es, et = s_stats.exp, t_stats.exp
        if scratch is None:
            scratch = torch.empty_like(es)
        if n_phi is None:
            n_phi = mask.sum(dim=1)
        nonempty = torch.stack([n_phi > 0, n_phi < num_classes], dim=1)
        # Z_g = sum_{i in g} exp(z_i / T - shift_g), shift = row max.
        z_s = _group_sums(es, s_stats.sumexp, mask, scratch, False)
        z_t = _group_sums(et, t_stats.sumexp, mask, scratch, False)
        sh_s = s_stats.shift.unsqueeze(1).repeat(1, 2)
        sh_t = t_stats.shift.unsqueeze(1).repeat(1, 2)
        # A non-empty group whose sum (nearly) underflows with the row-max
        # shift is recomputed with its own max: exact log-sum-exp per group.
        tiny = torch.finfo(dtype).tiny * 2.0**24
        bad = (((z_s < tiny) | (z_t < tiny)) & nonempty).any(dim=1)
        bad_rows = bad.nonzero().squeeze(1)
        if bad_rows.numel():
            _regroup_rows(bad_rows, s, temperature, es, mask, z_s, sh_s)
            _regroup_rows(bad_rows, t, temperature, et, mask, z_t, sh_t)
        # D_g = sum_{i in g} e^T_i (t_i - s_i); E_{p_hat^T}[b - a] = D/(T Z).
        cross = _cross_sums(s, t, et, mask, scratch, z_t)

        lse_s_g = sh_s + z_s.log()  # -inf for an empty group
        lse_t_g = sh_t + z_t.log()
        log_p_s = lse_s_g - torch.logsumexp(lse_s_g, dim=1, keepdim=True)
        log_p_t = lse_t_g - torch.logsumexp(lse_t_g, dim=1, keepdim=True)
        p_s, p_t = log_p_s.exp(), log_p_t.exp()
        zero = torch.zeros((), dtype=dtype, device=s.device)
        kl = torch.where(nonempty,
                         cross / (temperature * z_t) - lse_t_g + lse_s_g,
                         zero)
        binary = torch.where(p_t > 0, p_t * (log_p_t - log_p_s),
                             zero).sum(dim=1)

        if student.requires_grad:
            ctx.buffers = (es, et, scratch, mask)
            ctx.row_stats = (z_s, z_t, p_s, p_t, nonempty)
        else:
            ctx.buffers = None
        ctx.temperature = temperature
        ctx.in_dtype = in_dtype
        p_phi_t, p_psi_t = p_t[:, 0].contiguous(), p_t[:, 1].contiguous()
        p_phi_s = p_s[:, 0].contiguous()
        ctx.mark_non_differentiable(p_phi_t, p_psi_t, p_phi_s)
        return (kl[:, 0].contiguous(), kl[:, 1].contiguous(), binary, p_phi_t,
                p_psi_t, p_phi_s)

    @staticmethod
    def backward(ctx, g_pri: Tensor, g_sec: Tensor, g_bin: Tensor,
                 *unused: Tensor) -> Tuple[Optional[Tensor], ...]:
        if ctx.buffers is None:
            raise RuntimeError(
                'grouped_kl_terms: backward called twice (retain_graph) or on '
                'a student that did not require grad; the fused backward '
                'consumes its buffers')
        es, et, w, mask = ctx.buffers
        z_s, z_t, p_s, p_t, nonempty = ctx.row_stats
        ctx.buffers = ctx.row_stats = None
        temp = ctx.temperature
        g_kl = torch.stack([g_pri, g_sec], dim=1).to(z_s.dtype)
        g_b = g_bin.to(z_s.dtype).unsqueeze(1)
        # d/da_i, i in g: (g_g + g_b (P^S_g - P^T_g)) p_hat^S_i - g_g p_hat^T_i
        # with p_hat^S_i = e^S_i / Z^S_g, p_hat^T_i = e^T_i / Z^T_g, a = z/T.
        c_s = (g_kl + g_b * (p_s - p_t)) / (z_s * temp)
        c_t = g_kl / (z_t * temp)
        zero = torch.zeros((), dtype=c_s.dtype, device=c_s.device)
        c_s = torch.where(nonempty, c_s, zero)
        c_t = torch.where(nonempty, c_t, zero)
        es.mul_(torch.where(mask, c_s[:, :1], c_s[:, 1:], out=w))
        torch.where(mask, c_t[:, :1], c_t[:, 1:], out=w)
        grad = es.addcmul_(et, w, value=-1.0)
        if grad.dtype != ctx.in_dtype:
            grad = grad.to(ctx.in_dtype)
        return grad, None, None, None, None, None, None, None


def grouped_kl_terms(student_logits: Tensor,
                     teacher_logits: Tensor,
                     primary_mask: Tensor,
                     temperature: float = 1.0,
                     *,
                     student_stats: Optional[SoftmaxStats] = None,
                     teacher_stats: Optional[SoftmaxStats] = None,
                     scratch: Optional[Tensor] = None,
                     group_size: Optional[Tensor] = None) -> GroupedKLTerms:
    r"""Within-group and binary KL divergences of GKD (eq. 5, 6, 9).

    With :math:`a = z^S / T`, :math:`b = z^T / T` and the groups
    :math:`\Phi` (``primary_mask``) and :math:`\Psi = U \setminus \Phi`:

    .. math::
        \hat{p}_i = \frac{e^{z_i}}{\sum_{l \in \Phi} e^{z_l}}\ (i \in \Phi),
        \quad
        \check{p}_j = \frac{e^{z_j}}{\sum_{l \in \Psi} e^{z_l}}\
        (j \in \Psi), \quad
        p_b = [p_\Phi, p_\Psi],\
        p_\Phi = \frac{\sum_{l \in \Phi} e^{z_l}}{\sum_{l \in U} e^{z_l}}

    (eq. 5, 6) and the identity (eq. 9)

    .. math::
        \mathrm{KL}(p^T \| p^S) = p^T_\Phi\,
        \underbrace{\mathrm{KL}(\hat{p}^T \| \hat{p}^S)}_{\text{Primary-KD}}
        + p^T_\Psi\,
        \underbrace{\mathrm{KL}(\check{p}^T \| \check{p}^S)}
        _{\text{Secondary-KD}}
        + \underbrace{\mathrm{KL}(p_b^T \| p_b^S)}_{\text{Binary-KD}}

    Everything is computed in log space (group log-sum-exps). An empty group
    has KL 0 and mass 0. Gradients flow to ``student_logits`` only (the
    teacher is constant); the backward pass is analytic and consumes the
    internal buffers, so it can run once per forward.

    Args:
        student_logits (Tensor): Student logits (B, C).
        teacher_logits (Tensor): Teacher logits (B, C).
        primary_mask (Tensor): Bool (or 0/1) mask (B, C) of :math:`\Phi`.
        temperature (float): The temperature :math:`T`. Defaults to 1.0.
        student_stats (SoftmaxStats, optional): :func:`softmax_stats` of the
            student at ``temperature``, shared with the ranking (consumed).
            Defaults to None.
        teacher_stats (SoftmaxStats, optional): Same for the teacher.
            Defaults to None.
        scratch (Tensor, optional): A (B, C) float buffer (consumed).
            Defaults to None.
        group_size (Tensor, optional): :math:`|\Phi|` per row if known.
            Defaults to None.

    Returns:
        GroupedKLTerms: Per-sample terms, without any :math:`T^2` factor.
    """
    if student_logits.shape != teacher_logits.shape \
            or student_logits.shape != primary_mask.shape \
            or student_logits.dim() != 2:
        raise ValueError('student/teacher logits and primary_mask must share '
                         'one (B, C) shape')
    out = _GroupedKLFunction.apply(student_logits, teacher_logits,
                                   primary_mask, float(temperature),
                                   student_stats, teacher_stats, scratch,
                                   group_size)
    return GroupedKLTerms(*out)


# --------------------------------------------------------------------------
# Eq. 11: the loss module
# --------------------------------------------------------------------------


@MODELS.register_module()
class GKDLoss(nn.Module):
    r"""Grouped Knowledge Distillation loss (`GKD, AAAI 2023
    <https://arxiv.org/abs/2304.04462>`_).

    The classes are split per sample into a primary group :math:`\Phi` (the
    top-:math:`k` classes of the ranking network, :math:`k` from eq. 3) and a
    secondary group :math:`\Psi`; the loss (eq. 11, plus the optional
    Secondary-KD of Table 1) is

    .. math::
        \mathcal{L}_{GKD} = w \cdot T^2 \cdot \frac{1}{B} \sum_{b=1}^{B}
        \Big( \lambda_1\, \mathrm{KL}(\hat{p}^T \| \hat{p}^S)
        + \lambda_2\, \mathrm{KL}(p_b^T \| p_b^S)
        + \lambda_3\, \mathrm{KL}(\check{p}^T \| \check{p}^S) \Big)_b

    with all distributions at temperature :math:`T` (see
    :func:`grouped_kl_terms`). With ``lambda1='p_phi_t'``, ``lambda2=1`` and
    ``lambda3='p_psi_t'`` the bracket is exactly :math:`\mathrm{KL}(p^T \|
    p^S)` (eq. 9), i.e. vanilla KD.

    Defaults follow the paper (per-sample :math:`k` ranked by the student,
    :math:`\tau = 0.93`, :math:`\lambda_1 = 8`, :math:`\lambda_2 = 1`, no
    Secondary-KD, :math:`T = 1`). The authors' code corresponds to
    ``k_mode='fixed'`` (``fixed_k=10000``) or ``'batch'``,
    ``force_target=True``, ``temperature=4`` (see ``docs/PAPERS.md``).
    The teacher logits are treated as constants.

    Args:
        tau (float): Threshold :math:`\tau \in (0, 1]` of eq. 3 (and of the
            batch mode). Defaults to 0.93.
        lambda1 (float | str): Weight of Primary-KD, or ``'p_phi_t'`` for the
            per-sample natural weight :math:`p^T_\Phi` (Table 3).
            Defaults to 8.0.
        lambda2 (float): Weight of Binary-KD. Defaults to 1.0.
        lambda3 (float | str): Weight of Secondary-KD (Table 1), or
            ``'p_psi_t'`` for the natural weight :math:`p^T_\Psi`.
            Defaults to 0.0.
        temperature (float): Temperature :math:`T` of every softmax; the loss
            is multiplied by :math:`T^2`. Defaults to 1.0.
        k_mode (str): ``'per_sample'`` (eq. 3, the paper), ``'batch'`` (one
            :math:`k` per batch from the batch-summed softmax at :math:`T=1`
            on a grid of ``batch_k_step``, the authors' adaptive file) or
            ``'fixed'`` (``fixed_k``, the authors' training script).
            Defaults to 'per_sample'.
        rank_by (str): Network whose prediction ranks the classes,
            ``'student'`` (the paper) or ``'teacher'``.
            Defaults to 'student'.
        fixed_k (int): :math:`k` of ``k_mode='fixed'``, clipped to
            :math:`C`. Defaults to 10000.
        batch_k_step (int): Grid step of ``k_mode='batch'``.
            Defaults to 100.
        force_target (bool): Put the ground-truth class into :math:`\Phi`
            keeping :math:`|\Phi| = k`: if it is not among the top-:math:`k`
            it replaces the :math:`k`-th ranked class (as the authors' code;
            :math:`k` itself is computed without forcing). Requires
            ``gt_label``. Defaults to False.
        loss_weight (float): Weight :math:`w` of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 tau: float = 0.93,
                 lambda1: Union[float, str] = 8.0,
                 lambda2: float = 1.0,
                 lambda3: Union[float, str] = 0.0,
                 temperature: float = 1.0,
                 k_mode: str = 'per_sample',
                 rank_by: str = 'student',
                 fixed_k: int = 10000,
                 batch_k_step: int = 100,
                 force_target: bool = False,
                 loss_weight: float = 1.0):
        super().__init__()
        if not 0.0 < tau <= 1.0:
            raise ValueError(f'tau must be in (0, 1], got {tau}')
        if isinstance(lambda1, str) and lambda1 != 'p_phi_t':
            raise ValueError("lambda1 must be a float or 'p_phi_t'")
        if isinstance(lambda3, str) and lambda3 != 'p_psi_t':
            raise ValueError("lambda3 must be a float or 'p_psi_t'")
        if k_mode not in ('per_sample', 'batch', 'fixed'):
            raise ValueError(f'unknown k_mode {k_mode!r}')
        if rank_by not in ('student', 'teacher'):
            raise ValueError(f'unknown rank_by {rank_by!r}')
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        if fixed_k < 1 or batch_k_step < 1:
            raise ValueError('fixed_k and batch_k_step must be >= 1')
        self.tau = float(tau)
        self.lambda1 = lambda1 if isinstance(lambda1, str) else float(lambda1)
        self.lambda2 = float(lambda2)
        self.lambda3 = lambda3 if isinstance(lambda3, str) else float(lambda3)
        self.temperature = float(temperature)
        self.k_mode = k_mode
        self.rank_by = rank_by
        self.fixed_k = int(fixed_k)
        self.batch_k_step = int(batch_k_step)
        self.force_target = bool(force_target)
        self.loss_weight = float(loss_weight)

    @torch.no_grad()
    def primary_mask(self,
                     student_logits: Tensor,
                     teacher_logits: Tensor,
                     gt_label: Optional[Tensor] = None,
                     _stats: Optional[Tuple[SoftmaxStats, SoftmaxStats]] = None,
                     _scratch: Optional[Tensor] = None) -> Tensor:
        """The primary-group mask (B, C) this loss uses for a batch.

        Args:
            student_logits (Tensor): Student logits (B, C).
            teacher_logits (Tensor): Teacher logits (B, C).
            gt_label (Tensor, optional): Labels (B, ), needed with
                ``force_target``. Defaults to None.

        Returns:
            Tensor: Bool mask (B, C).
        """
        if self.rank_by == 'student':
            rank = student_logits.detach()
            stats = None if _stats is None else _stats[0]
        else:
            rank = teacher_logits.detach()
            stats = None if _stats is None else _stats[1]
        rows_n, num_classes = rank.shape
        gt = None
        if self.force_target:
            if gt_label is None:
                raise ValueError('force_target=True needs gt_label')
            gt = gt_label
        if self.k_mode == 'per_sample':
            if stats is None:
                stats = softmax_stats(rank, self.temperature)
            k, kth_val, kth_idx = _per_sample_k(rank, self.tau, stats,
                                                _scratch)
            return _mask_from_threshold(rank, k, kth_val, kth_idx, gt)
        if self.k_mode == 'batch':
            kb = select_batch_k(
                rank, self.tau, self.batch_k_step,
                stats if self.temperature == 1.0 else None)
        else:
            kb = min(self.fixed_k, num_classes)
        return primary_group_mask(rank, kb, gt)

    def forward(self,
                student_logits: Tensor,
                teacher_logits: Tensor,
                gt_label: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Compute the GKD loss and its logging statistics.

        Args:
            student_logits (Tensor): Student logits (B, C).
            teacher_logits (Tensor): Teacher logits (B, C).
            gt_label (Tensor, optional): Labels (B, ), needed with
                ``force_target``. Defaults to None.

        Returns:
            dict[str, Tensor]: ``loss`` (the weighted total) and the detached
            scalars ``primary_kd``, ``binary_kd``, ``secondary_kd`` (batch
            means of the unweighted KL terms, without :math:`T^2`),
            ``k_mean``, ``k_std`` (primary group size) and ``p_phi_t`` (mean
            teacher primary mass).
        """
        if student_logits.shape != teacher_logits.shape \
                or student_logits.dim() != 2:
            raise ValueError('expected student and teacher logits of the same '
                             f'(B, C) shape, got {tuple(student_logits.shape)}'
                             f' and {tuple(teacher_logits.shape)}')
        temp = self.temperature
        dtype = student_logits.dtype
        if dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32
        with torch.no_grad():
            s = student_logits.detach().to(dtype)
            t = teacher_logits.detach().to(dtype)
            s_stats = softmax_stats(s, temp)
            t_stats = softmax_stats(t, temp)
            scratch = torch.empty_like(s_stats.exp)
            mask = self.primary_mask(s, t, gt_label, (s_stats, t_stats),
                                     scratch)
            k_long = mask.sum(dim=1)
            k = k_long.to(dtype)
        terms = grouped_kl_terms(
            student_logits,
            teacher_logits,
            mask,
            temp,
            student_stats=s_stats,
            teacher_stats=t_stats,
            scratch=scratch,
            group_size=k_long)
        lam1 = terms.p_phi_t if self.lambda1 == 'p_phi_t' else self.lambda1
        per_sample = lam1 * terms.primary_kd
        if self.lambda2 != 0:
            per_sample = per_sample + self.lambda2 * terms.binary_kd
        if self.lambda3 == 'p_psi_t':
            per_sample = per_sample + terms.p_psi_t * terms.secondary_kd
        elif self.lambda3 != 0:
            per_sample = per_sample + self.lambda3 * terms.secondary_kd
        loss = per_sample.mean() * (self.loss_weight * temp * temp)
        return dict(
            loss=loss,
            primary_kd=terms.primary_kd.detach().mean(),
            binary_kd=terms.binary_kd.detach().mean(),
            secondary_kd=terms.secondary_kd.detach().mean(),
            k_mean=k.mean(),
            k_std=k.std(correction=0),
            p_phi_t=terms.p_phi_t.detach().mean())

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, lambda1={self.lambda1!r}, '
                f'lambda2={self.lambda2}, lambda3={self.lambda3!r}, '
                f'temperature={self.temperature}, k_mode={self.k_mode!r}, '
                f'rank_by={self.rank_by!r}, fixed_k={self.fixed_k}, '
                f'force_target={self.force_target}, '
                f'loss_weight={self.loss_weight}')

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
* eq. 2 (:math:`\Phi` as a mask, optionally with the forced target):
  :func:`primary_group_mask`;
* eq. 5, 6, 9 (within-group and binary KLs): :func:`grouped_kl_terms`;
* eq. 11 (weighted sum): :class:`GKDLoss`.

Implementation notes (speed, numerics):

* :math:`k` is found without sorting the :math:`C` classes
  (:func:`_descending_window`): a strided column sample places a value band
  around the point where the cumulative mass reaches :math:`\tau`, one exact
  masked sum gives the mass above the band, and only the band (a few % of
  the classes) is extracted and refined recursively, so the sorted cumulative
  sum is only materialised near :math:`\tau`.
* :math:`\Phi` is a float 0/1 mask built by one comparison against the value
  of the :math:`k`-th ranked class (ties resolved with an exact top-k).
* :func:`grouped_kl_terms` is a fused autograd function: the exponentials
  :math:`e^{z/T - \max}` of both networks are computed once and shared with
  the ranking (whose exact primary mass is reused), every group quantity is
  a masked sum evaluated in log space (a per-group shift where a group would
  underflow, so empty or tiny groups never give NaN/inf), and the backward
  pass writes the analytic gradient in place: one call materialises four
  :math:`B \times C` float tensors in total.
"""
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
        if temperature != 1.0:
            scale = torch.tensor(1.0 / temperature, dtype=z.dtype,
                                 device=z.device)
            # (z - max) / T in one pass
            e = torch.addcmul(-zmax * scale, z, scale, out=out) \
                if out is not None else torch.addcmul(-zmax * scale, z, scale)
        else:
            e = torch.sub(z, zmax, out=out) if out is not None else z - zmax
        e.exp_()
        return SoftmaxStats(zmax.squeeze(1) / temperature, e, e.sum(dim=1))


# --------------------------------------------------------------------------
# Where a descending cumulative sum crosses a level, without a full sort
# --------------------------------------------------------------------------

_SORT_LIMIT = 2048  # rows at most this wide are simply sorted
_SAMPLE = 2048  # strided column sample used to place the band
_Z_SCORE = 4.0  # band half-width in standard errors of the estimate
_MAX_DEPTH = 6
_WINDOW_HALF = 64  # a returned window spans the crossing +- this many


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


def _gather_weights(weights: Optional[Tensor], index: Tensor,
                    values: Tensor) -> Tensor:
    if weights is None:  # count mode: every finite value weighs one
        return torch.isfinite(values).to(torch.float64)
    return weights.gather(1, index)


def _sorted_window(values: Tensor, weights: Optional[Tensor],
                   need: Tensor) -> _Window:
    """Sort the rows and keep the stretch around the crossing."""
    sv, si = values.sort(dim=1, descending=True)
    cum = _gather_weights(weights, si, sv).cumsum(dim=1)
    rows_n, width = sv.shape
    zeros = torch.zeros(rows_n, dtype=torch.long, device=sv.device)
    span = 2 * _WINDOW_HALF + 1
    if width <= span:
        return _Window(sv, si, cum, zeros, cum.new_zeros(rows_n))
    pos = (cum < need.unsqueeze(1)).sum(dim=1)
    start = (pos - _WINDOW_HALF).clamp(min=0, max=width - span)
    idx = start.unsqueeze(1) + torch.arange(span, device=sv.device)
    before = cum.gather(1, (start - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    c_above = torch.where(start > 0, before, torch.zeros_like(before))
    return _Window(sv.gather(1, idx), si.gather(1, idx), cum.gather(1, idx),
                   start, c_above)


def _descending_window(values: Tensor,
                       weights: Optional[Tensor],
                       need: Tensor,
                       total: Tensor,
                       buffers: Optional[Tuple[Tensor, Tensor]] = None,
                       depth: int = 0) -> _Window:
    """Locate, per row, where the descending cumulative weight reaches
    ``need`` without sorting whole rows.

    Narrow rows are sorted. For wider rows a strided sample places a value
    band around the crossing (:func:`_band_thresholds`); the weight above
    the band is one exact masked sum, the band is extracted (``nonzero``)
    into a small padded array and the search recurses into it. A band that
    misses the crossing (checked exactly) is widened and recomputed.

    Args:
        values (Tensor): (R, n) ranking values; ``-inf`` entries are padding.
        weights (Tensor, optional): (R, n) non-negative weights aligned with
            ``values`` and non-increasing in the value within a row (softmax
            numerators); None counts elements.
        need (Tensor): (R,) target cumulative weight, ``0 < need <= total``.
        total (Tensor): (R,) exact total weight of each row.
        buffers (tuple[Tensor, Tensor], optional): two (R, n) buffers of
            ``values.dtype`` for the masks. Defaults to None.
        depth (int): Recursion depth.

    Returns:
        _Window: A window (at most ``2 * _WINDOW_HALF + 1`` wide after a
        sort) whose ``cum`` reaches ``need`` when ``total`` does.
    """
    if values.size(1) <= _SORT_LIMIT or depth >= _MAX_DEPTH:
        return _sorted_window(values, weights, need)
    return _band_window(values, weights, need, total, buffers, depth)


def _band_thresholds(values: Tensor, weights: Optional[Tensor], need: Tensor,
                     total: Tensor, z_score: float) -> Tuple[Tensor, Tensor]:
    """Estimate a value band ``[lo, hi]`` that contains the crossing.

    A strided column sample estimates (Horvitz-Thompson) the weight *below*
    a value; its target ``total - need`` is exact and the estimate's
    variance only involves the small weights below the crossing, so heavy
    tails (a few dominant, unsampled classes) cost nothing: the band then
    reaches up to ``hi = +inf``. Elements ``> hi`` are "above"; the band is
    ``lo <= x <= hi``. ``z_score`` sets the safety margin.
    """
    stride = max(values.size(1) // _SAMPLE, 1)
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
    # granularity: weight of the sample element just above the crossing
    gran = sw.gather(1, (p_star - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    gran = torch.where(p_star > 0, gran, torch.zeros_like(gran))
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
                 total: Tensor, buffers: Optional[Tuple[Tensor, Tensor]],
                 depth: int) -> _Window:
    """Place a band by sampling, verify it with exact masked sums, extract
    it and recurse (see :func:`_descending_window`)."""
    rows_n, n = values.shape
    device = values.device
    lowest = torch.finfo(values.dtype).min
    cdtype = torch.float64 if weights is None else weights.dtype
    if buffers is None:
        buffers = (torch.empty_like(values), torch.empty_like(values))
    above_buf, band_buf = buffers
    lo, hi = _band_thresholds(values, weights, need, total, _Z_SCORE)
    for attempt in range(3):
        band = torch.ge(values, lo.unsqueeze(1), out=band_buf)
        if bool(torch.isfinite(hi).any()):
            above = torch.gt(values, hi.unsqueeze(1), out=above_buf)
            band.sub_(above)  # lo <= x <= hi (above lies inside >= lo)
            n_above = above.sum(dim=1).long()
            if weights is None:
                c_above = n_above.to(torch.float64)
            else:
                c_above = torch.bmm(weights.unsqueeze(1),
                                    above.unsqueeze(2)).view(rows_n)
        else:  # no row has elements above its band
            n_above = torch.zeros(rows_n, dtype=torch.long, device=device)
            c_above = torch.zeros(rows_n, dtype=cdtype, device=device)
        r_idx, c_idx = band.bool().nonzero(as_tuple=True)
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
# Eq. 2-3: the primary group
# --------------------------------------------------------------------------


class _Grouping(NamedTuple):
    """k per row, the value and column of the k-th ranked class (column -1
    when unknown) and the ranking network's exact primary mass (sum of its
    ``SoftmaxStats.exp`` over the top-k, None when not available)."""
    k: Tensor
    kth_value: Tensor
    kth_index: Tensor
    phi_exp_sum: Optional[Tensor]


def _per_sample_k(ranking_logits: Tensor,
                  tau: float,
                  stats: SoftmaxStats,
                  buffers: Optional[Tuple[Tensor, Tensor]] = None
                  ) -> _Grouping:
    """Eq. 3 per row (see :func:`select_primary_k`)."""
    r = ranking_logits.detach()
    rows_n, num_classes = r.shape
    full_k = torch.full((rows_n, ), num_classes, dtype=torch.long,
                        device=r.device)
    minus_inf = r.new_full((rows_n, ), float('-inf'))
    if tau >= 1.0:  # only U itself has mass exactly 1: Phi = U, Psi empty
        return _Grouping(full_k, minus_inf, torch.full_like(full_k, -1),
                         stats.sumexp)
    total = stats.sumexp
    need = total * tau
    win = _descending_window(r, stats.exp, need, total, buffers)
    cum = win.cum
    width = cum.size(1)
    found = cum[:, -1] >= need
    pos = (cum < need.unsqueeze(1)).sum(dim=1).clamp(max=width - 1)
    c_j = cum.gather(1, pos.unsqueeze(1)).squeeze(1)
    c_prev = cum.gather(1, (pos - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    c_prev = torch.where(pos > 0, c_prev, win.c_above)
    has_prev = (pos > 0) | (win.n_above > 0)
    # argmin_k |c_k - tau| with the first minimum: k - 1 on a tie, and the
    # start of a plateau of equal cumulative sums.
    take_prev = has_prev & ((need - c_prev) <= (c_j - need))
    plateau = (cum < c_prev.unsqueeze(1)).sum(dim=1)
    k_prev = torch.where(pos > 0, win.n_above + plateau + 1, win.n_above)
    k = torch.where(take_prev, k_prev, win.n_above + pos + 1)
    k = torch.where(found, k, full_k)
    phi_mass = torch.where(take_prev, c_prev, c_j)
    phi_mass = torch.where(found, phi_mass, total)
    rel = k - win.n_above - 1
    in_win = found & (rel >= 0)
    rel_c = rel.clamp(min=0).unsqueeze(1)
    kth_val = win.values.gather(1, rel_c).squeeze(1)
    kth_idx = win.index.gather(1, rel_c).squeeze(1)
    # k-th class just above the window: Phi = {x > first window value}.
    above_thr = torch.nextafter(win.values[:, 0],
                                win.values.new_tensor(float('inf')))
    kth_val = torch.where(in_win, kth_val, above_thr)
    kth_val = torch.where(found, kth_val, minus_inf)
    kth_idx = torch.where(in_win, kth_idx, torch.full_like(kth_idx, -1))
    return _Grouping(k, kth_val, kth_idx, phi_mass)


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
    :math:`\tau`. The rows are not sorted (see :func:`_descending_window`).

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
        return _per_sample_k(ranking_logits, tau, stats).k


def select_batch_k(ranking_logits: Tensor,
                   tau: float = 0.93,
                   step: int = 100,
                   stats: Optional[SoftmaxStats] = None) -> int:
    r"""One primary group size per batch, as the authors' adaptive code.

    The softmax (at :math:`T = 1`) of the ranking network is summed over the
    batch and sorted in descending order; :math:`k` is the smallest value on
    the grid :math:`\{1, 1 + s, 1 + 2s, \dots\} \cap [1, C)` whose cumulative
    mass reaches :math:`\tau B`, and :math:`C` if none does (the authors'
    loop would fail there).

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


def _topk_grouping(ranking_logits: Tensor,
                   k: Tensor,
                   buffers: Optional[Tuple[Tensor, Tensor]] = None
                   ) -> _Grouping:
    """Value and column of the k-th largest entry per row (count mode)."""
    r = ranking_logits.detach()
    rows_n, num_classes = r.shape
    k = k.clamp(1, num_classes)
    if bool((k >= num_classes).all()):
        return _Grouping(k, r.new_full((rows_n, ), float('-inf')),
                         torch.full_like(k, -1), None)
    total = torch.full((rows_n, ), float(num_classes), dtype=torch.float64,
                       device=r.device)
    win = _descending_window(r, None, k.to(torch.float64), total, buffers)
    rel = (k - win.n_above - 1).clamp(min=0).unsqueeze(1)
    kth_val = win.values.gather(1, rel).squeeze(1)
    kth_val = torch.where(k >= num_classes, torch.full_like(kth_val,
                                                            float('-inf')),
                          kth_val)
    return _Grouping(k, kth_val, win.index.gather(1, rel).squeeze(1), None)


def _grouping_mask(ranking_logits: Tensor, grouping: _Grouping,
                   gt_label: Optional[Tensor],
                   out: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Float 0/1 mask of Phi (+ forced target) from a :class:`_Grouping`.

    Returns the mask and the rows whose ``phi_exp_sum`` must be recomputed
    (ties at the k-th value); rows where the target was swapped in get their
    ``phi_exp_sum`` corrected by the caller from the returned swap.
    """
    r = ranking_logits.detach()
    k, kth_idx = grouping.k, grouping.kth_index
    mask = torch.ge(r, grouping.kth_value.unsqueeze(1), out=out) \
        if out is not None else (r >= grouping.kth_value.unsqueeze(1)).to(
            r.dtype)
    count = mask.sum(dim=1)
    tie_rows = (count != k.to(count.dtype)).nonzero().squeeze(1)
    if tie_rows.numel():  # ties at the k-th value: exact top-k per row
        kth_idx = kth_idx.clone()
        for row in tie_rows.tolist():
            top = r[row].topk(int(k[row])).indices
            mask[row] = 0
            mask[row, top] = 1
            kth_idx[row] = top[-1]
    swap = None
    if gt_label is not None:
        gt = gt_label.reshape(-1).long().to(r.device)
        miss = (mask.gather(1, gt.unsqueeze(1)).squeeze(1) == 0).nonzero()
        miss = miss.squeeze(1)
        if miss.numel():
            low = kth_idx[miss].clone()
            unknown = low < 0
            if bool(unknown.any()):
                rows = miss[unknown]
                sub = r[rows].masked_fill(mask[rows] == 0, float('inf'))
                low[unknown] = sub.argmin(dim=1)
            mask[miss, low] = 0
            mask[miss, gt[miss]] = 1
            swap = (miss, low, gt[miss])
    return mask, tie_rows, swap


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
        rows_n = ranking_logits.size(0)
        k = torch.as_tensor(k, device=ranking_logits.device).long()
        grouping = _topk_grouping(ranking_logits, k.expand(rows_n))
        return _grouping_mask(ranking_logits, grouping, gt_label,
                              None)[0].bool()


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


_SHARE_LIMIT = 2.0**-10  # below this share a group is not a difference


def _dot(x: Tensor, mask: Tensor) -> Tensor:
    """Row-wise dot products of (B, C) tensors without a temporary."""
    return torch.bmm(x.unsqueeze(1), mask.unsqueeze(2)).view(x.size(0))


def _exp_group_sums(exps: Tuple[Tensor, Tensor], totals: Tuple[Tensor,
                                                               Tensor],
                    hints: Tuple[Optional[Tensor], Optional[Tensor]],
                    mask: Tensor, scratch: Tensor,
                    psi_nonempty: Tensor) -> Tuple[Tensor, Tensor]:
    """(B, 2) sums of each ``exp`` over Phi and Psi.

    Phi is a masked dot product (or the exact ``hint`` from the ranking),
    Psi the difference to the row total, except where Psi's share is below
    ``_SHARE_LIMIT``: there it is summed directly too (no cancellation).
    """
    phis = [h if h is not None else _dot(e, mask) for e, h in zip(exps, hints)]
    psis = [torch.where(psi_nonempty, tot - phi, torch.zeros_like(phi))
            for tot, phi in zip(totals, phis)]
    risky = [psi_nonempty & (psi < _SHARE_LIMIT * tot)
             for psi, tot in zip(psis, totals)]
    n_risky = int((risky[0] | risky[1]).sum())
    if n_risky > mask.size(0) // 4:
        psi_mask = torch.sub(torch.ones((), dtype=mask.dtype,
                                        device=mask.device), mask,
                             out=scratch)
        for i, e in enumerate(exps):
            if bool(risky[i].any()):
                psis[i] = torch.where(risky[i], _dot(e, psi_mask), psis[i])
    elif n_risky:
        for i, e in enumerate(exps):
            rows = risky[i].nonzero().squeeze(1)
            if rows.numel():
                keep = 1 - mask.index_select(0, rows)
                psis[i][rows] = (e.index_select(0, rows) * keep).sum(dim=1)
    return (torch.stack([phis[0], psis[0]], dim=1),
            torch.stack([phis[1], psis[1]], dim=1))


def _regroup_rows(rows: Tensor, z: Tensor, temperature: float, e: Tensor,
                  mask: Tensor, sums: Tensor, shift: Tensor) -> None:
    """Recompute rows of ``e`` with one shift per group (its own max), for
    groups whose sum underflows with the row-max shift."""
    zr = z.index_select(0, rows) / temperature
    m = mask.index_select(0, rows) > 0
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


def _group_coefficients(mask: Tensor, coef: Tensor, out: Tensor) -> Tensor:
    """``out = coef[:, 0]`` on Phi and ``coef[:, 1]`` on Psi, exactly:
    ``(1 - m) c_psi`` then ``+ m c_phi`` (one term is exactly zero)."""
    c_phi, c_psi = coef[:, :1], coef[:, 1:]
    torch.addcmul(c_psi, mask, -c_psi, out=out)
    return out.addcmul_(mask, c_phi)


class _GroupedKLFunction(torch.autograd.Function):
    """Fused eq. 5, 6, 9 with an analytic, in-place backward."""

    @staticmethod
    def forward(ctx, student: Tensor, teacher: Tensor, mask: Tensor,
                temperature: float, s_stats: Optional[SoftmaxStats],
                t_stats: Optional[SoftmaxStats], scratch: Optional[Tensor],
                n_phi: Optional[Tensor], s_phi: Optional[Tensor],
                t_phi: Optional[Tensor]) -> Tuple[Tensor, ...]:
        in_dtype = student.dtype
        dtype = torch.float32 if in_dtype in (torch.float16,
                                              torch.bfloat16) else in_dtype
        s = student.detach().to(dtype)
        t = teacher.detach().to(dtype)
        if mask.dtype != dtype:
            mask = mask.to(dtype)
        rows_n, num_classes = s.shape
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
        z_s, z_t = _exp_group_sums((es, et),
                                   (s_stats.sumexp, t_stats.sumexp),
                                   (s_phi, t_phi), mask, scratch,
                                   nonempty[:, 1])
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
        # D_g = sum_{i in g} e^T_i (t_i - s_i), both groups summed directly;
        # E_{p_hat^T}[b - a] = D_g / (T Z^T_g).
        x = torch.sub(t, s, out=scratch).mul_(et)
        d_phi = _dot(x, mask)
        d_psi = x.addcmul_(x, mask, value=-1.0).sum(dim=1)
        cross = torch.stack([d_phi, d_psi], dim=1)

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
        zero = torch.zeros((), dtype=z_s.dtype, device=z_s.device)
        c_s = torch.where(nonempty, (g_kl + g_b * (p_s - p_t)) /
                          (z_s * temp), zero)
        c_t = torch.where(nonempty, g_kl / (z_t * temp), zero)
        es.mul_(_group_coefficients(mask, c_s, w))
        grad = es.addcmul_(et, _group_coefficients(mask, c_t, w), value=-1.0)
        if grad.dtype != ctx.in_dtype:
            grad = grad.to(ctx.in_dtype)
        return (grad, ) + (None, ) * 9


def grouped_kl_terms(student_logits: Tensor,
                     teacher_logits: Tensor,
                     primary_mask: Tensor,
                     temperature: float = 1.0,
                     *,
                     student_stats: Optional[SoftmaxStats] = None,
                     teacher_stats: Optional[SoftmaxStats] = None,
                     scratch: Optional[Tensor] = None,
                     group_size: Optional[Tensor] = None,
                     student_phi_exp_sum: Optional[Tensor] = None,
                     teacher_phi_exp_sum: Optional[Tensor] = None
                     ) -> GroupedKLTerms:
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

    Everything is evaluated in log space (group log-sum-exps). An empty
    group has KL 0 and mass 0. Gradients flow to ``student_logits`` only
    (the teacher is constant); the backward pass is analytic and consumes
    the internal buffers, so it can run once per forward.

    Args:
        student_logits (Tensor): Student logits (B, C).
        teacher_logits (Tensor): Teacher logits (B, C).
        primary_mask (Tensor): Mask (B, C) of :math:`\Phi`, bool or 0/1
            float.
        temperature (float): The temperature :math:`T`. Defaults to 1.0.
        student_stats (SoftmaxStats, optional): :func:`softmax_stats` of the
            student at ``temperature``, shared with the ranking (consumed).
            Defaults to None.
        teacher_stats (SoftmaxStats, optional): Same for the teacher.
            Defaults to None.
        scratch (Tensor, optional): A (B, C) float buffer (consumed).
            Defaults to None.
        group_size (Tensor, optional): :math:`|\Phi|` per row, if known.
            Defaults to None.
        student_phi_exp_sum (Tensor, optional): Exact
            :math:`\sum_{i \in \Phi}` ``student_stats.exp``, if known.
            Defaults to None.
        teacher_phi_exp_sum (Tensor, optional): Same for the teacher.
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
                                   group_size, student_phi_exp_sum,
                                   teacher_phi_exp_sum)
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

    def _group(self, student: Tensor, teacher: Tensor,
               gt_label: Optional[Tensor], stats: Tuple[SoftmaxStats,
                                                        SoftmaxStats],
               mask_out: Optional[Tensor], scratch: Optional[Tensor]
               ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Primary mask (float 0/1), k and the ranking network's exact
        primary ``exp`` sum (or None)."""
        by_student = self.rank_by == 'student'
        rank = student if by_student else teacher
        rank_stats = stats[0] if by_student else stats[1]
        num_classes = rank.size(1)
        gt = None
        if self.force_target:
            if gt_label is None:
                raise ValueError('force_target=True needs gt_label')
            gt = gt_label
        buffers = None if mask_out is None else (mask_out, scratch)
        if self.k_mode == 'per_sample':
            grouping = _per_sample_k(rank, self.tau, rank_stats, buffers)
        else:
            if self.k_mode == 'batch':
                kb = select_batch_k(
                    rank, self.tau, self.batch_k_step,
                    rank_stats if self.temperature == 1.0 else None)
            else:
                kb = min(self.fixed_k, num_classes)
            k = torch.full((rank.size(0), ), kb, dtype=torch.long,
                           device=rank.device)
            grouping = _topk_grouping(rank, k, buffers)
        mask, tie_rows, swap = _grouping_mask(rank, grouping, gt, mask_out)
        phi = grouping.phi_exp_sum
        if phi is not None:
            phi = phi.clone()
            e = rank_stats.exp
            if swap is not None:
                rows, removed, added = swap
                phi[rows] += e[rows, added] - e[rows, removed]
            if tie_rows.numel():
                phi[tie_rows] = (e[tie_rows] * mask[tie_rows]).sum(dim=1)
        return mask, grouping.k, phi

    @torch.no_grad()
    def primary_mask(self,
                     student_logits: Tensor,
                     teacher_logits: Tensor,
                     gt_label: Optional[Tensor] = None) -> Tensor:
        """The primary-group mask this loss uses for a batch.

        Args:
            student_logits (Tensor): Student logits (B, C).
            teacher_logits (Tensor): Teacher logits (B, C).
            gt_label (Tensor, optional): Labels (B, ), needed with
                ``force_target``. Defaults to None.

        Returns:
            Tensor: Bool mask (B, C).
        """
        s, t = student_logits.detach(), teacher_logits.detach()
        stats = (softmax_stats(s, self.temperature),
                 softmax_stats(t, self.temperature))
        return self._group(s, t, gt_label, stats, None, None)[0].bool()

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
            stats = (softmax_stats(s, temp), softmax_stats(t, temp))
            mask = torch.empty_like(s)
            scratch = torch.empty_like(s)
            mask, k, phi = self._group(s, t, gt_label, stats, mask, scratch)
        by_student = self.rank_by == 'student'
        terms = grouped_kl_terms(
            student_logits,
            teacher_logits,
            mask,
            temp,
            student_stats=stats[0],
            teacher_stats=stats[1],
            scratch=scratch,
            group_size=k,
            student_phi_exp_sum=phi if by_student else None,
            teacher_phi_exp_sum=None if by_student else phi)
        lam1 = terms.p_phi_t if self.lambda1 == 'p_phi_t' else self.lambda1
        per_sample = lam1 * terms.primary_kd
        if self.lambda2 != 0:
            per_sample = per_sample + self.lambda2 * terms.binary_kd
        if self.lambda3 == 'p_psi_t':
            per_sample = per_sample + terms.p_psi_t * terms.secondary_kd
        elif self.lambda3 != 0:
            per_sample = per_sample + self.lambda3 * terms.secondary_kd
        loss = per_sample.mean() * (self.loss_weight * temp * temp)
        k = k.to(dtype)
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

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
  (:func:`_descending_window`): a column sample (about
  :math:`8\sqrt{C}` classes, read in cache-line blocks) places a value band
  around the point where the cumulative mass reaches :math:`\tau`, one exact
  masked sum gives the mass above the band, the band (a few % of the
  classes) is extracted, checked exactly (rows it missed are repaired on a
  row subset) and refined recursively, so a sorted cumulative sum is only
  ever materialised for ~:math:`10^2` classes around :math:`\tau`. The
  result is exact (it equals the argmin over the fully sorted cumulative
  sum up to floating-point summation order). A growing top-:math:`k` was not
  used: for a freshly initialised student :math:`k \approx 0.09 C`, and
  ``topk`` of that size costs more than a whole KD step.
* :math:`\Phi` is a float 0/1 mask built by one comparison against the value
  of the :math:`k`-th ranked class (ties resolved with an exact top-k); float
  masks are used because boolean masked ops are several times slower on CPU.
* :func:`grouped_kl_terms` is a fused autograd function: the exponentials
  :math:`e^{z/T - \max}` of both networks are computed once and shared with
  the ranking (whose exact primary mass is reused), every group quantity is
  a masked sum evaluated in log space (a per-group shift where a group would
  underflow, a direct sum where a difference would cancel, so empty or tiny
  groups never give NaN/inf), and the backward pass writes the analytic
  gradient in place: one call materialises four :math:`B \times C` float
  tensors in total, and on CPU three of them are reused across steps
  (``reuse_buffers``), since page-faulting fresh buffers costs as much as
  the arithmetic.
* Small and mid-size work of the search runs on one intra-op thread
  (:class:`_SerialSection`): on a busy machine every parallel region stalls
  when a worker is descheduled.
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

_SAMPLE = (1024, 512)  # strided column sample at depth 0 / inside a band
_SAMPLE_PER_SQRT_C = 8  # depth 0 samples max(1024, 8 sqrt(C)) columns
_Z_SCORE = 4.0  # band half-width in standard errors of the estimate
_MAX_DEPTH = 6
_WINDOW_HALF = 64  # a returned window spans the crossing +- this many


class _SerialSection:
    """Run a section on one intra-op thread.

    The band search issues many small and mid-size ops (sample statistics,
    verification, the search inside the compact band). As parallel regions
    they gain little, and each stalls whenever a worker thread is
    descheduled on a busy machine. Full (B, C) passes stay parallel.
    """

    def __enter__(self):
        self.threads = torch.get_num_threads()
        if self.threads > 1:
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        if self.threads > 1:
            torch.set_num_threads(self.threads)
        return False


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
                       buffers: Optional[Tuple[Tensor, ...]] = None,
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
        buffers (tuple[Tensor, ...], optional): two (R, n) buffers of
            ``values.dtype`` for the masks, optionally a third of dtype bool.
            Defaults to None.
        depth (int): Recursion depth.

    Returns:
        _Window: A window (at most ``2 * _WINDOW_HALF + 1`` wide after a
        sort) whose ``cum`` reaches ``need`` when ``total`` does.
    """
    if values.size(1) <= 4 * _sample_size(values.size(1), depth) \
            or depth >= _MAX_DEPTH:
        return _sorted_window(values, weights, need)
    return _band_window(values, weights, need, total, buffers, depth)


class _Sample(NamedTuple):
    """A strided column sample of the rows (see :func:`_band_thresholds`):
    its top ``m`` entries sorted in descending order, plus totals over the
    whole sample."""
    values: Tensor  # (R, m) descending
    weights: Tensor  # (R, m) aligned weights (0 for padding)
    stride: float  # columns represented by each sampled column
    total: Tensor  # (R, 1) weight of the whole sample
    total2: Tensor  # (R, 1) sum of squared weights of the whole sample
    count: Tensor  # (R, 1) number of real (non-padding) sampled columns


def _sample_size(n: int, depth: int) -> int:
    if depth > 0:
        return _SAMPLE[1]
    return max(_SAMPLE[0], int(_SAMPLE_PER_SQRT_C * n**0.5))


def _strided_columns(x: Tensor, stride: int, block: int) -> Tensor:
    """Columns ``x[:, j]`` for ``j % stride < block``: ``block`` contiguous
    columns (one cache line) every ``stride``, i.e. one in ``stride /
    block`` columns without touching the rest of the rows' memory."""
    if block <= 1:
        return x[:, ::stride]
    rows_n, n = x.shape
    groups = n // stride
    if groups == 0:
        return x
    return x[:, :groups * stride].unfold(1, block, stride).reshape(rows_n, -1)


def _sorted_sample(sv: Tensor, sw: Tensor, stride: float,
                   top: Optional[int] = None) -> _Sample:
    """Sort (the ``top`` largest of) a sample and attach its totals."""
    total = sw.sum(dim=1, keepdim=True)
    total2 = (sw * sw).sum(dim=1, keepdim=True)
    count = (sw > 0).sum(dim=1, keepdim=True).clamp(min=1).to(sw.dtype)
    if top is None or top >= sv.size(1):
        sv, order = sv.sort(dim=1, descending=True)
    else:
        sv, order = sv.topk(top, dim=1)
    return _Sample(sv, sw.gather(1, order), stride, total, total2, count)


def _take_sample(values: Tensor, weights: Optional[Tensor], need: Tensor,
                 total: Tensor, depth: int) -> _Sample:
    """Strided column sample of the rows; only its top part (down to where
    a 1/8 sub-sample places the band's lower end, with a wide margin) is
    sorted."""
    n = values.size(1)
    size = _sample_size(n, depth)
    # Wide rows: 16-column blocks (one cache line) every ``stride`` columns.
    block = 16 if n >= 32 * size else 1
    stride = max(n * block // size, 1)
    sv = _strided_columns(values, stride, block).contiguous()
    if depth > 0:  # padded compact rows
        keep = torch.isfinite(sv)
        sw = keep.to(torch.float64) if weights is None \
            else _strided_columns(weights, stride, block) * keep
    elif weights is None:
        sw = torch.ones(sv.shape, dtype=torch.float64, device=sv.device)
    else:
        sw = _strided_columns(weights, stride, block).contiguous()
    size = sv.size(1)
    top = None
    if size >= 1024:
        sub = _sorted_sample(sv[:, ::8], sw[:, ::8], n / sv[:, ::8].size(1))
        lo_sub, _ = _band_thresholds(sub, need, total, 3 * _Z_SCORE)
        deep = int((sv >= lo_sub.unsqueeze(1)).sum(dim=1).max())
        top = min(size, deep + 64)
    return _sorted_sample(sv, sw, n / size, top)


def _band_thresholds(sample: _Sample, need: Tensor, total: Tensor,
                     z_score: float) -> Tuple[Tensor, Tensor]:
    """Estimate a value band ``[lo, hi]`` that contains the crossing.

    The sample estimates (Horvitz-Thompson) the weight *below* a value; its
    target ``total - need`` is exact and the estimate's variance only
    involves the small weights below the crossing, so a few dominant
    (unsampled) classes cost nothing: the band then reaches up to
    ``hi = +inf``. Elements ``> hi`` are "above"; the band is
    ``lo <= x <= hi``. ``z_score`` sets the safety margin; a miss is
    detected exactly and repaired by :func:`_lower_lo`.
    """
    sv, sw, stride = sample.values, sample.weights, sample.stride
    n_keep = sample.count
    # sample weight strictly below each (sorted) position
    below = sample.total - sw.cumsum(dim=1)
    below2 = sample.total2 - (sw * sw).cumsum(dim=1)
    target = (total - need).unsqueeze(1)  # exact weight below the crossing
    est = below * stride
    n_s = sv.size(1)
    p_star = (est > target).sum(dim=1, keepdim=True).clamp(max=n_s - 1)
    s1 = below.gather(1, p_star)
    var = (below2.gather(1, p_star) - s1 * s1 / n_keep).clamp(min=0)
    # granularity: weight of the sample element just above the crossing
    gran = sw.gather(1, (p_star - 1).clamp(min=0)) * (p_star > 0)
    delta = stride * (z_score * var.sqrt() + 2 * gran)
    # hi: lowest sample value whose estimated weight at-or-below exceeds
    # target + delta, so that the weight above hi stays below need.
    q_hi = (est + stride * sw >= target + delta).sum(dim=1, keepdim=True) - 1
    hi = sv.gather(1, q_hi.clamp(min=0))
    hi = torch.where((q_hi >= 0) & torch.isfinite(hi), hi,
                     torch.full_like(hi, float('inf')))
    # lo: highest sample value with estimated weight strictly below it at
    # most target - delta (target / 2 when the margin eats the target).
    level = torch.where(target - delta > 0, target - delta, target / 2)
    q_lo = (est > level).sum(dim=1, keepdim=True)
    lo = sv.gather(1, q_lo.clamp(max=n_s - 1))
    lo = torch.where((q_lo < n_s) & torch.isfinite(lo), lo,
                     torch.full_like(lo, torch.finfo(sv.dtype).min))
    return torch.minimum(lo, hi).squeeze(1), hi.squeeze(1)


def _lower_lo(sample: _Sample, lo: Tensor, mass_ge: Tensor, need: Tensor,
              z_score: float) -> Tensor:
    """A lower ``lo`` for rows whose exact weight at-or-above ``lo``
    (``mass_ge``) falls short of ``need``: walk down the sample from ``lo``
    until the estimated extra weight covers the shortfall with a margin.
    Only weights below the old ``lo`` enter, so the estimate is tight."""
    sv, sw, stride = sample.values, sample.weights, sample.stride
    below_lo = (sv < lo.unsqueeze(1)).to(sw.dtype)
    w = sw * below_lo
    acc = w.cumsum(dim=1) * stride
    acc2 = (w * w).cumsum(dim=1) * stride * stride
    short = (need - mass_ge).unsqueeze(1)
    ok = (acc - z_score * acc2.sqrt() - 2 * stride * w >= short) \
        & (below_lo > 0)
    first = torch.where(ok.any(dim=1), ok.float().argmax(dim=1),
                        torch.full_like(lo, -1, dtype=torch.long))
    new = sv.gather(1, first.clamp(min=0).unsqueeze(1)).squeeze(1)
    lowest = torch.full_like(lo, torch.finfo(lo.dtype).min)
    return torch.where((first >= 0) & torch.isfinite(new), new, lowest)


def _above_masses(values: Tensor,
                  weights: Optional[Tensor],
                  hi: Tensor,
                  lo: Tensor,
                  above_buf: Tensor,
                  band_buf: Tensor,
                  flags: Optional[Tensor] = None
                  ) -> Tuple[Tensor, Tensor, Tensor]:
    """Exact count and weight of the elements above ``hi``; leaves the band
    ``lo <= x <= hi`` as a 0/1 float mask in ``band_buf`` and returns its
    flat (row-major) indices."""
    rows_n = values.size(0)
    if bool(torch.isfinite(hi).any()):
        above = torch.gt(values, hi.unsqueeze(1), out=above_buf)
        n_above = above.sum(dim=1).long()
        if weights is None:
            c_above = n_above.to(torch.float64)
        else:
            c_above = torch.mul(weights, above, out=band_buf).sum(dim=1)
        band = torch.ge(values, lo.unsqueeze(1), out=band_buf)
        band.sub_(above)  # lo <= x <= hi (above lies inside >= lo)
    else:  # no row has elements above its band
        n_above = torch.zeros(rows_n, dtype=torch.long, device=values.device)
        c_above = torch.zeros(
            rows_n,
            dtype=torch.float64 if weights is None else weights.dtype,
            device=values.device)
        band = torch.ge(values, lo.unsqueeze(1), out=band_buf)
    if flags is None:
        flags = torch.empty(band.shape, dtype=torch.bool, device=band.device)
    flat = flags.copy_(band).view(-1).nonzero().squeeze(1)
    return n_above, c_above, flat


class _Band(NamedTuple):
    """Extracted band entries of some rows of a (R, n) matrix."""
    rows: Tensor  # (R',) rows of the matrix, in output order
    flat: Tensor  # (N,) flat indices into the matrix, grouped by row
    r_out: Tensor  # (N,) output row (position in ``rows``) of each entry
    need: Tensor  # (R',) weight still needed inside the band
    n_above: Tensor  # (R',)
    c_above: Tensor  # (R',)
    mass: Tensor  # (R',) exact band weight


def _band_window(values: Tensor,
                 weights: Optional[Tensor],
                 need: Tensor,
                 total: Tensor,
                 buffers: Optional[Tuple[Tensor, ...]],
                 depth: int) -> _Window:
    """Place a band by sampling, extract it, verify it exactly (repairing
    the rows it missed on a row subset) and recurse (see
    :func:`_descending_window`)."""
    rows_n, n = values.shape
    values = values.contiguous()
    # NB: row subsets use x[rows]; x.index_select(0, rows) on wide rows is
    # pathologically slow with several threads on a busy CPU.
    if buffers is None:
        buffers = (torch.empty_like(values), torch.empty_like(values))
    sample = _take_sample(values, weights, need, total, depth)
    with _SerialSection():
        lo, hi = _band_thresholds(sample, need, total, _Z_SCORE)
        # Few elements above the band: extracting them is cheaper than the
        # passes that would exclude them.
        n_hi = (sample.values > hi.unsqueeze(1)).sum() * sample.stride
        if bool(n_hi < 0.04 * values.numel()):
            hi = torch.full_like(hi, float('inf'))
    bands = []
    rows = torch.arange(rows_n, device=values.device)
    bufs = buffers
    for attempt in range(3):
        if attempt:
            v = values[rows]
            w = None if weights is None else weights[rows]
            bufs = (torch.empty_like(v), torch.empty_like(v))
        else:
            v, w = values, weights
        masses = _above_masses(v, w, hi, lo, *bufs)
        with _SerialSection():
            retry = _verify_band(bands, masses, w, rows, need, n, attempt,
                                 sample, lo, hi)
        if retry is None:
            break
        rows, lo, hi = retry
    if len(bands) == 1:
        return _pack_and_recurse(values, weights, bands[0], depth)
    return _merge_windows(
        rows_n, [(b.rows, _pack_and_recurse(values, weights, b, depth))
                 for b in bands if b.rows.numel()])


def _verify_band(bands: list, masses: Tuple[Tensor, Tensor, Tensor],
                 w: Optional[Tensor], rows: Tensor, need: Tensor, n: int,
                 attempt: int, sample: _Sample, lo: Tensor, hi: Tensor
                 ) -> Optional[Tuple[Tensor, Tensor, Tensor]]:
    """Check the extracted band of ``rows`` exactly; append the rows that
    hold the crossing to ``bands`` and return (rows, lo, hi) to retry for
    the others (None when all are done)."""
    n_above, c_above, flat = masses
    r_idx = torch.div(flat, n, rounding_mode='floor')
    if w is None:
        b_mass = torch.bincount(r_idx, minlength=rows.numel()).to(
            torch.float64)
    else:
        b_mass = c_above.new_zeros(rows.numel()).index_add_(
            0, r_idx, w.reshape(-1).index_select(0, flat))
    fail_hi = c_above >= need[rows]
    fail_lo = c_above + b_mass < need[rows]
    bad = fail_hi | fail_lo
    if attempt == 2 or not bool(bad.any()):
        if attempt:  # flat indices into the full matrix
            flat = flat + (rows[r_idx] - r_idx) * n
        bands.append(
            _Band(rows, flat, r_idx, need[rows] - c_above, n_above, c_above,
                  b_mass))
        return None
    good = ~bad
    keep = good[r_idx]
    r_good = torch.cumsum(good.long(), 0) - 1
    r_keep = r_idx[keep]
    bands.append(
        _Band(rows[good], flat[keep] + (rows[r_keep] - r_keep) * n,
              r_good[r_keep], need[rows[good]] - c_above[good],
              n_above[good], c_above[good], b_mass[good]))
    # Repair the missed rows: no "above" set where it held too much, a lower
    # lo (anchored on the exact mass) where it held too little, and at the
    # last attempt the always-valid lowest value.
    sub = bad.nonzero().squeeze(1)
    lo_r, hi_r = lo[sub], hi[sub]
    hi_r = torch.where(fail_hi[sub], torch.full_like(hi_r, float('inf')),
                       hi_r)
    if attempt == 0:
        new_lo = _lower_lo(
            _Sample(*(f[rows[sub]] if isinstance(f, Tensor) else f
                      for f in sample)), lo_r, (c_above + b_mass)[sub],
            need[rows[sub]], 2 * _Z_SCORE)
        lo_r = torch.where(fail_lo[sub], torch.minimum(new_lo, lo_r), lo_r)
    else:
        lo_r = torch.where(fail_lo[sub],
                           torch.full_like(lo_r, torch.finfo(lo.dtype).min),
                           lo_r)
    return rows[sub], torch.minimum(lo_r, hi_r), hi_r


def _pack_and_recurse(values: Tensor, weights: Optional[Tensor], band: _Band,
                      depth: int) -> _Window:
    """Pack the band entries into a padded (R', width) array and search it.
    Rows whose band is far wider than the others (e.g. massive ties) are
    searched separately so that they do not inflate everybody's width."""
    n = values.size(1)
    device = values.device
    rows_n = band.rows.numel()
    counts = torch.bincount(band.r_out, minlength=rows_n)
    typical = int(counts.float().median()) + _SAMPLE[1]
    wide = counts > 4 * typical
    if bool(wide.any()) and not bool(wide.all()):
        parts = []
        for sel in (wide, ~wide):
            keep = sel[band.r_out]
            remap = torch.cumsum(sel.long(), 0) - 1
            sub = _Band(band.rows[sel], band.flat[keep],
                        remap[band.r_out[keep]], band.need[sel],
                        band.n_above[sel], band.c_above[sel], band.mass[sel])
            parts.append((sel.nonzero().squeeze(1),
                          _pack_and_recurse(values, weights, sub, depth)))
        return _merge_windows(rows_n, parts)
    width = max(int(counts.max()), 1) if rows_n else 1
    starts = counts.cumsum(0) - counts
    dest = torch.arange(band.flat.numel(), device=device) + \
        (band.r_out * width - starts[band.r_out])
    p_val = values.new_full((rows_n * width, ), float('-inf'))
    p_val = p_val.index_copy_(0, dest, values.view(-1).index_select(
        0, band.flat)).view(rows_n, width)
    p_idx = torch.zeros(rows_n * width, dtype=torch.long, device=device)
    p_idx = p_idx.index_copy_(0, dest, band.flat.remainder(n)).view(
        rows_n, width)
    if weights is None:
        p_w = None
    else:
        p_w = weights.new_zeros(rows_n * width)
        p_w = p_w.index_copy_(0, dest, weights.reshape(-1).index_select(
            0, band.flat)).view(rows_n, width)
    # A band that does not halve the width (massive ties) is sorted.
    sub_depth = depth + 1 if 2 * width <= n else _MAX_DEPTH
    with _SerialSection():
        sub = _descending_window(p_val, p_w, band.need, band.mass, None,
                                 sub_depth)
    return _Window(sub.values, p_idx.gather(1, sub.index),
                   sub.cum + band.c_above.unsqueeze(1),
                   sub.n_above + band.n_above,
                   sub.c_above + band.c_above)


def _merge_windows(rows_n: int, parts) -> _Window:
    """Merge windows computed for disjoint row sets ``(rows, window)``."""
    width = max(w.values.size(1) for _, w in parts)
    out = None
    for rows, win in parts:
        extra = width - win.values.size(1)
        fields = [win.values, win.index, win.cum]
        if extra:
            r = win.values.size(0)
            fields = [
                torch.cat([win.values,
                           win.values.new_full((r, extra), float('-inf'))],
                          1),
                torch.cat([win.index, win.index.new_zeros((r, extra))], 1),
                torch.cat([win.cum, win.cum[:, -1:].expand(-1, extra)], 1)
            ]
        if out is None:
            out = [f.new_zeros((rows_n, width)) for f in fields] + [
                win.n_above.new_zeros(rows_n),
                win.c_above.new_zeros(rows_n)
            ]
        for dst, src in zip(out, fields + [win.n_above, win.c_above]):
            dst[rows] = src
    return _Window(*out)


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
                  buffers: Optional[Tuple[Tensor, ...]] = None
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
                   buffers: Optional[Tuple[Tensor, ...]] = None
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
                   gt_label: Optional[Tensor], out: Optional[Tensor]
                   ) -> Tuple[Tensor, Tensor, Optional[Tuple[Tensor, ...]]]:
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


def _masked_sum(x: Tensor, mask: Tensor, scratch: Tensor) -> Tensor:
    """Row sums of ``x * mask`` through a scratch buffer."""
    return torch.mul(x, mask, out=scratch).sum(dim=1)


def _exp_group_sums(exps: Tuple[Tensor, Tensor], totals: Tuple[Tensor,
                                                               Tensor],
                    hints: Tuple[Optional[Tensor], Optional[Tensor]],
                    mask: Tensor, scratch: Tensor,
                    psi_nonempty: Tensor) -> Tuple[Tensor, Tensor]:
    """(B, 2) sums of each ``exp`` over Phi and Psi.

    Phi is a masked sum (or the exact ``hint`` from the ranking), Psi the
    difference to the row total, except where Psi's share is below
    ``_SHARE_LIMIT``: there it is summed directly too (no cancellation).
    """
    phis = [h if h is not None else _masked_sum(e, mask, scratch)
            for e, h in zip(exps, hints)]
    psis = [torch.where(psi_nonempty, tot - phi, torch.zeros_like(phi))
            for tot, phi in zip(totals, phis)]
    risky = [psi_nonempty & (psi < _SHARE_LIMIT * tot)
             for psi, tot in zip(psis, totals)]
    n_risky = int((risky[0] | risky[1]).sum())
    if n_risky > mask.size(0) // 4:
        for i, e in enumerate(exps):
            if bool(risky[i].any()):
                direct = torch.addcmul(e, e, mask, value=-1.0,
                                       out=scratch).sum(dim=1)
                psis[i] = torch.where(risky[i], direct, psis[i])
    elif n_risky:
        for i, e in enumerate(exps):
            rows = risky[i].nonzero().squeeze(1)
            if rows.numel():
                keep = 1 - mask[rows]
                psis[i][rows] = (e[rows] * keep).sum(dim=1)
    return (torch.stack([phis[0], psis[0]], dim=1),
            torch.stack([phis[1], psis[1]], dim=1))


def _cross_sums(s: Tensor, t: Tensor, et: Tensor, mask: Tensor,
                scratch: Tensor, z_t: Tensor,
                nonempty: Tensor) -> Tensor:
    """(B, 2) group sums of ``e^T_i (t_i - s_i)`` over Phi and Psi.

    The group with the smaller teacher mass in most rows is summed directly,
    the other one is the difference to the total; rows where that difference
    would cancel (its teacher share below ``_SHARE_LIMIT``) are summed
    directly as well.
    """
    share_phi = z_t[:, 0] / z_t.sum(dim=1)
    direct_phi = bool((share_phi < 0.5).sum() * 2 >= share_phi.numel())
    x = torch.sub(t, s, out=scratch).mul_(et)
    total = x.sum(dim=1)
    if direct_phi:
        direct = x.mul_(mask).sum(dim=1)
    else:
        direct = x.addcmul_(x, mask, value=-1.0).sum(dim=1)
    other = total - direct
    other_share = 1 - share_phi if direct_phi else share_phi
    other_nonempty = nonempty[:, 1] if direct_phi else nonempty[:, 0]
    other = torch.where(other_nonempty, other, torch.zeros_like(other))
    rows = (other_nonempty & (other_share < _SHARE_LIMIT)).nonzero()
    rows = rows.squeeze(1)
    if rows.numel():
        m = mask[rows]
        keep = 1 - m if direct_phi else m
        xr = (t[rows] - s[rows]) \
            * et[rows]
        other[rows] = (xr * keep).sum(dim=1)
    pair = (direct, other) if direct_phi else (other, direct)
    return torch.stack(pair, dim=1)


def _regroup_rows(rows: Tensor, z: Tensor, temperature: float, e: Tensor,
                  mask: Tensor, sums: Tensor, shift: Tensor) -> None:
    """Recompute rows of ``e`` with one shift per group (its own max), for
    groups whose sum underflows with the row-max shift."""
    zr = z[rows] / temperature
    m = mask[rows] > 0
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
    """``out = coef[:, 0]`` on Phi and ``coef[:, 1]`` on Psi.

    One pass ``c_psi + m (c_phi - c_psi)`` when the two have comparable
    magnitudes (relative error below 20 eps) or one is zero (exact);
    otherwise ``(1 - m) c_psi + m c_phi`` in two exact passes.
    """
    c_phi, c_psi = coef[:, :1], coef[:, 1:]
    a, b = c_phi.abs(), c_psi.abs()
    if bool(((a <= 8 * b) & (b <= 8 * a) | (a == 0) | (b == 0)).all()):
        return torch.addcmul(c_psi, mask, c_phi - c_psi, out=out)
    torch.addcmul(c_psi, mask, -c_psi, out=out)
    return out.addcmul_(mask, c_phi)


class _GroupedKLFunction(torch.autograd.Function):
    """Fused eq. 5, 6, 9 with an analytic, in-place backward."""

    @staticmethod
    def forward(ctx, student: Tensor, teacher: Tensor, mask: Tensor,
                temperature: float, s_stats: Optional[SoftmaxStats],
                t_stats: Optional[SoftmaxStats], scratch: Optional[Tensor],
                n_phi: Optional[Tensor], s_phi: Optional[Tensor],
                t_phi: Optional[Tensor], release) -> Tuple[Tensor, ...]:
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
        # D_g = sum_{i in g} e^T_i (t_i - s_i); E_{p_hat^T}[b - a] = D/(T Z).
        cross = _cross_sums(s, t, et, mask, scratch, z_t, nonempty)

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

        ctx.release = release
        if student.requires_grad:
            ctx.buffers = (es, et, scratch, mask)
            ctx.row_stats = (z_s, z_t, p_s, p_t, nonempty)
        else:
            ctx.buffers = None
            if release is not None:
                release(et, scratch, mask)
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
        if bool((c_t[:, 1] == 0).all()):  # no Secondary-KD: W^T = m c^T_phi
            grad = es.addcmul_(et.mul_(mask), c_t[:, :1], value=-1.0)
        else:
            grad = es.addcmul_(et, _group_coefficients(mask, c_t, w),
                               value=-1.0)
        if ctx.release is not None:
            ctx.release(et, w, mask)
        if grad.dtype != ctx.in_dtype:
            grad = grad.to(ctx.in_dtype)
        return (grad, ) + (None, ) * 10


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
                     teacher_phi_exp_sum: Optional[Tensor] = None,
                     release_buffers=None) -> GroupedKLTerms:
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
        release_buffers (callable, optional): Called with the (B, C)
            buffers that are no longer needed (teacher exponentials, scratch,
            mask) once the backward pass (or a no-grad forward) is done.
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
                                   teacher_phi_exp_sum, release_buffers)
    return GroupedKLTerms(*out)


# --------------------------------------------------------------------------
# Eq. 11: the loss module
# --------------------------------------------------------------------------


class _Workspace:
    """Large CPU buffers reused across steps.

    Freshly allocated (B, C) buffers are ``mmap``-ed and page-faulted on
    first touch, which on CPU costs about as much as the arithmetic done
    with them. A buffer handed out by :meth:`take` only comes back through
    :meth:`give` once nothing uses it any more (after the backward pass that
    needed it, or at the end of a no-grad forward); concurrent or
    interleaved calls simply get fresh memory. Only buffers of the latest
    shape are kept.
    """

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._free = []

    def take(self,
             like: Tensor,
             dtype: Optional[torch.dtype] = None) -> Tensor:
        dtype = like.dtype if dtype is None else dtype
        for i, buf in enumerate(self._free):
            if buf.shape == like.shape and buf.dtype == dtype \
                    and buf.device == like.device:
                return self._free.pop(i)
        return torch.empty(like.shape, dtype=dtype, device=like.device)

    def give(self, *buffers: Optional[Tensor]) -> None:
        for buf in buffers:
            if buf is None:
                continue
            if self._free and self._free[0].shape != buf.shape:
                self._free = []
            if len(self._free) < self.capacity:
                self._free.append(buf)

    def __getstate__(self):  # never pickle or copy the buffers
        return {'capacity': self.capacity, '_free': []}

    def __deepcopy__(self, memo):
        return _Workspace(self.capacity)


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
        reuse_buffers (bool): On CPU, reuse the large (B, C) work buffers
            across steps (see :class:`_Workspace`; about 3 B x C floats stay
            allocated between steps). Defaults to True.
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
                 loss_weight: float = 1.0,
                 reuse_buffers: bool = True):
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
        self.reuse_buffers = bool(reuse_buffers)
        self._workspace = _Workspace()

    def _group(self, student: Tensor, teacher: Tensor,
               gt_label: Optional[Tensor], stats: Tuple[SoftmaxStats,
                                                        SoftmaxStats],
               mask_out: Optional[Tensor], scratch: Optional[Tensor],
               flags: Optional[Tensor] = None
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
        buffers = None if mask_out is None else (mask_out, scratch, flags)
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
        ws = self._workspace if (self.reuse_buffers
                                 and student_logits.device.type == 'cpu') \
            else None
        with torch.no_grad():
            s = student_logits.detach().to(dtype)
            t = teacher_logits.detach().to(dtype)
            if ws is None:
                t_buf, mask, scratch = (torch.empty_like(s) for _ in range(3))
                flags = torch.empty_like(s, dtype=torch.bool)
            else:
                t_buf, mask, scratch = (ws.take(s) for _ in range(3))
                flags = ws.take(s, torch.bool)
            stats = (softmax_stats(s, temp),
                     softmax_stats(t, temp, out=t_buf))
            mask, k, phi = self._group(s, t, gt_label, stats, mask, scratch,
                                       flags)
            if ws is not None:
                ws.give(flags)
            del flags
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
            teacher_phi_exp_sum=None if by_student else phi,
            release_buffers=None if ws is None else ws.give)
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
                f'loss_weight={self.loss_weight}, '
                f'reuse_buffers={self.reuse_buffers}')

r"""Where a descending cumulative sum crosses a level, without a full sort.

The sampled "band" search behind eq. 3 of GKD (Zhao et al., AAAI 2023, see
``docs/papers.md`` §1) and the top-:math:`k` threshold of the fixed/batch
modes. It is the CPU path of :mod:`.selection`; on CUDA (and on CPU where
:mod:`.selection` measured it to lose) the plain sort is used instead.

:func:`descending_window` finds, per row, the stretch of the descending
order where the cumulative weight (softmax numerators, or counts) reaches a
level, without sorting the :math:`C` classes: a column sample (about
:math:`8\sqrt{C}` classes, read in cache-line blocks) places a value band
around the crossing, one exact masked sum gives the weight above the band,
the band (a few % of the classes) is extracted, checked exactly (rows it
missed are repaired on a row subset) and refined recursively, so a sorted
cumulative sum is only materialised for ~:math:`10^2` classes around the
crossing. The result is exact: the returned window equals the same stretch
of a full stable descending sort (ties in column order), up to the
floating-point summation order of the cumulative sums. A growing
top-:math:`k` was not used: for a freshly initialised student
:math:`k \approx 0.09 C`, and ``topk`` of that size costs more than a whole
KD step. The search syncs with the host (``nonzero``, data-dependent
branches), which is why it is not used on CUDA.
"""
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

_SAMPLE = (1024, 512)  # strided column sample at depth 0 / inside a band
_SAMPLE_PER_SQRT_C = 8  # depth 0 samples max(1024, 8 sqrt(C)) columns
_Z_SCORE = 4.0  # band half-width in standard errors of the estimate
_MAX_DEPTH = 6
_WINDOW_HALF = 64  # a returned window spans the crossing +- this many


class Window(NamedTuple):
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
                   need: Tensor) -> Window:
    """Sort the rows and keep the stretch around the crossing."""
    sv, si = values.sort(dim=1, descending=True, stable=True)
    cum = _gather_weights(weights, si, sv).cumsum(dim=1)
    rows_n, width = sv.shape
    zeros = torch.zeros(rows_n, dtype=torch.long, device=sv.device)
    span = 2 * _WINDOW_HALF + 1
    if width <= span:
        return Window(sv, si, cum, zeros, cum.new_zeros(rows_n))
    pos = (cum < need.unsqueeze(1)).sum(dim=1)
    start = (pos - _WINDOW_HALF).clamp(min=0, max=width - span)
    idx = start.unsqueeze(1) + torch.arange(span, device=sv.device)
    before = cum.gather(1, (start - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    c_above = torch.where(start > 0, before, torch.zeros_like(before))
    return Window(sv.gather(1, idx), si.gather(1, idx), cum.gather(1, idx),
                  start, c_above)


def descending_window(values: Tensor,
                      weights: Optional[Tensor],
                      need: Tensor,
                      total: Tensor,
                      buffers: Optional[Tuple[Tensor, ...]] = None,
                      depth: int = 0) -> Window:
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
        Window: A window (at most ``2 * _WINDOW_HALF + 1`` wide after a
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
                 depth: int) -> Window:
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
        retry = _verify_band(bands, masses, w, rows, need, n, attempt, sample,
                             lo, hi)
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
                      depth: int) -> Window:
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
    sub = descending_window(p_val, p_w, band.need, band.mass, None, sub_depth)
    return Window(sub.values, p_idx.gather(1, sub.index),
                  sub.cum + band.c_above.unsqueeze(1),
                  sub.n_above + band.n_above, sub.c_above + band.c_above)


def _merge_windows(rows_n: int, parts) -> Window:
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
    return Window(*out)

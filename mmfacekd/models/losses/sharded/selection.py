r"""GKD eq. 2-3 on class-sharded logits: the primary group :math:`\Phi`
and its size :math:`k` when each rank holds all rows of the global batch
but only its columns.

Zhao et al., *Grouped Knowledge Distillation for Deep Face Recognition*
(AAAI 2023), eq. 3: with :math:`\tilde{p}` the softened prediction of the
ranking network sorted in descending order (ties: lower global column
first, as the stable sort of :mod:`mmfacekd.models.losses.gkd.selection`),
:math:`k = \arg\min_k |\sum_{i \le k} \tilde{p}_i - \tau|` (first minimum).

Exact search across shards, without gathering the logits or sorting
whole rows (:func:`_crossing_ties`): per row, **histogram rounds on the
logit value** (every rank bins its columns into :data:`BINS` equal bins of
the global value range, the per-bin masses and counts are all-reduced, and
only the bin in which the cumulative mass from the top reaches
:math:`\tau` stays a candidate) until the crossing bin holds at most
:data:`FINAL` columns in all, which are then all-gathered and ordered the
same way by every rank. This gives the value :math:`v^*` of the first class
at which the global cumulative mass reaches :math:`\tau` (masses are
float64 sums), with the number and mass of the classes above it. A bin
never splits a tie group (the bin is a non-decreasing function of the
value), and the ties at :math:`v^*` are counted per rank and ordered by
global column (rank order, then local column), which places the crossing
inside the tie group and decides the first minimum of eq. 3 exactly as the
single-process code does. A given :math:`k` (``fixed`` and ``batch``
modes) uses the same search on counts instead of masses.

Floating point: the global masses are summed in another order than the
single-process ``cumsum``, so in float32 a row whose cumulative mass lies
within rounding of :math:`\tau` may get a ``k`` one apart (as between the
two single-process paths); in float64 and for exactly representable masses
(ties) the results are identical (tested on 1, 2 and 4 gloo ranks).
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from ...utils import get_world_size
from ...utils.replicated import global_max, replicated_sum
from ..gkd.softmax import SoftmaxStats

__all__ = ['ShardedGrouping', 'sharded_group_classes', 'sharded_batch_k']


class ShardedGrouping(NamedTuple):
    """The local columns of :math:`\\Phi` (bool (B, C_l)) and k (B, )."""
    mask: Tensor
    k: Tensor


#: bins of each histogram round of the crossing search (at most; fewer,
#: but at least 16, when the candidates are fewer than 32 per bin)
BINS = 1024
#: a row is finished by gathering its candidates once the crossing bin
#: holds at most this many columns (all ranks together)
FINAL = 256
#: histogram rounds at most; then the remaining candidates are gathered
#: whatever their number (only for values a few ulps apart)
MAX_ROUNDS = 6
#: rows binned at a time in the first round (bounds the int64 bin indices
#: and float64 weights alive at once)
CHUNK = 8


def _all_gather(x: Tensor) -> Tensor:
    """(W, ...) stack of ``x`` of every rank (rank order), no grad."""
    if get_world_size() == 1:
        return x.unsqueeze(0)
    out = [torch.empty_like(x) for _ in range(get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.stack(out)


class _Ties(NamedTuple):
    """Global counts at the crossing value ``v``: ``n_above`` columns
    above ``v``, their weight ``c_above``, ``n_tie`` columns equal to ``v``
    of weight ``w_tie`` each, the local tie-rank offset ``before`` (ties of
    lower ranks) and this rank's ties ``local_tie``."""
    v: Tensor
    n_above: Tensor
    c_above: Tensor
    n_tie: Tensor
    w_tie: Tensor
    before: Tensor
    local_tie: Tensor


class _Active(NamedTuple):
    """The candidates of one rank: values, weights (None: counts; float64
    after the first round) and which entries are real (None: all), plus
    per row the global range ``lo``, ``hi`` (float64) and the largest count
    of any rank ``width``."""
    values: Tensor
    weights: Optional[Tensor]
    valid: Optional[Tensor]
    lo: Tensor
    hi: Tensor
    width: Tensor


def _with_range(values: Tensor, weights: Optional[Tensor],
                valid: Optional[Tensor]) -> _Active:
    """Attach the global range of the candidates (one all-reduce)."""
    if valid is None:
        low, top = values.amin(dim=1), values.amax(dim=1)
        n = torch.full_like(low, values.size(1), dtype=torch.float64)
    else:
        inf = values.new_tensor(float('inf'))
        top = torch.where(valid, values, -inf).amax(dim=1)
        low = torch.where(valid, values, inf).amin(dim=1)
        n = valid.sum(dim=1).double()
    red = global_max(torch.stack([top.double(), -low.double(), n], dim=1))
    return _Active(values, weights, valid, -red[:, 1], red[:, 0],
                   red[:, 2].long())


def _bin_of(act: _Active, bins: int) -> Tensor:
    """Histogram bin of every candidate, a non-decreasing function of the
    value (ties share a bin); padding goes to the extra bin ``bins``.
    The first round (all columns) bins in the logits' dtype, the later
    (few candidates) in float64."""
    span = act.hi - act.lo
    scale = torch.where(span > 0, bins / span, 0.0).clamp(max=1e300)
    if act.valid is None:  # v * scale - lo * scale: one pass, monotone
        dtype = act.values.dtype
        scale = scale.clamp(max=torch.finfo(dtype).max / 4)
        shift = (-act.lo * scale).clamp(min=torch.finfo(dtype).min / 4)
        b = torch.addcmul(shift.to(dtype).unsqueeze(1), act.values,
                          scale.to(dtype).unsqueeze(1))
    else:
        b = (act.values.double() - act.lo.unsqueeze(1)) * scale.unsqueeze(1)
    b = b.clamp_(0, bins - 1).long()
    if act.valid is not None:
        b = torch.where(act.valid, b, bins)
    return b


def _histogram(act: _Active,
               bins: int) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Local bins (int16) of the candidates and the float64 per-bin counts
    and weights (B, bins + 1), :data:`CHUNK` rows at a time."""
    rows = act.values.size(0)
    dev = act.values.device
    index = torch.empty(act.values.shape, dtype=torch.int16, device=dev)
    hist_n = torch.zeros(rows, bins + 1, dtype=torch.float64, device=dev)
    hist_w = None if act.weights is None else torch.zeros_like(hist_n)
    one = torch.ones((), dtype=torch.float64, device=dev)
    for i in range(0, rows, CHUNK):
        part = slice(i, i + CHUNK)
        b = _bin_of(_Active(*(x if x is None or isinstance(x, int)
                              else x[part] for x in act)), bins)
        index[part] = b
        hist_n[part].scatter_add_(1, b, one.expand(b.shape))
        if hist_w is not None:
            hist_w[part].scatter_add_(
                1, b, act.weights[part].to(torch.float64))
    return index, hist_n, hist_w


def _compact(values: Tensor, weights: Optional[Tensor],
             keep: Tensor) -> Tuple[Tensor, Optional[Tensor], Tensor]:
    """The kept entries of each row, in column order, left-aligned and
    padded (values, weights, valid)."""
    rows = values.size(0)
    count = keep.sum(dim=1, dtype=torch.int64)
    width = max(int(count.max()), 1)
    row, col = keep.nonzero().unbind(1)
    pos = torch.arange(row.numel(), device=values.device) - \
        (count.cumsum(0) - count)[row]
    out_v = values.new_zeros(rows, width)
    out_v[row, pos] = values[row, col]
    out_w = None
    if weights is not None:
        out_w = torch.zeros(rows, width, dtype=torch.float64,
                            device=values.device)
        out_w[row, pos] = weights[row, col].to(torch.float64)
    valid = torch.arange(width, device=values.device) < count.unsqueeze(1)
    return out_v, out_w, valid


def _crossing_ties(values: Tensor, weights: Optional[Tensor],
                   need: Tensor, total: int) -> _Ties:
    """Per row the largest value ``v`` whose global weight of columns
    ``>= v`` reaches ``need`` (the lowest value if none does), with the
    global counts at ``v`` (:class:`_Ties`); ``weights=None``: counts,
    ``total`` the number of columns of all ranks.

    Histogram rounds on the logit value (:data:`BINS` equal bins between
    the global minimum and maximum of the candidates, one all-reduce of the
    per-bin weights and counts, one of the range) keep the bin in which
    the cumulative weight from the top reaches ``need``: everything above
    it is known to be above ``v``, everything below it below. The bin
    holds ties entirely (the bin is a non-decreasing function of the
    value), so once it holds at most :data:`FINAL` columns in all, its
    columns are all-gathered and every rank orders them the same way
    (value descending, then rank, then local column: the global column
    order of the single-process stable sort). A bin of one repeated value
    needs no gathering: it is the tie group itself.
    """
    rows = values.size(0)
    dev = values.device
    mass_above = torch.zeros(rows, dtype=torch.float64, device=dev)
    count_above = torch.zeros_like(mass_above)
    count = torch.full_like(mass_above, float(total))
    act = _with_range(values, weights, None)
    for _ in range(MAX_ROUNDS):
        if not bool(((count > FINAL) & (act.hi > act.lo)).any()):
            break
        bins = int(min(BINS, max(16, int(count.max()) // 32)))
        b, hist_n, hist_w = _histogram(act, bins)
        if act.weights is None:
            hist = replicated_sum(hist_n[:, :bins])
            hist_n = hist_w = hist
        else:
            hist = replicated_sum(torch.cat([hist_w[:, :bins],
                                             hist_n[:, :bins]], dim=1))
            hist_w, hist_n = hist[:, :bins], hist[:, bins:]
        # weights and counts of the bins at and above each bin, plus a
        # zero column past the top
        above_w = hist_w.flip(1).cumsum(1).flip(1)
        above_n = hist_n.flip(1).cumsum(1).flip(1)
        reach = mass_above.unsqueeze(1) + above_w >= need.unsqueeze(1)
        hit = (reach.sum(dim=1) - 1).clamp(min=0)
        pad = mass_above.new_zeros(rows, 1)
        nxt = (hit + 1).unsqueeze(1)
        mass_above = mass_above + torch.cat([above_w, pad], 1).gather(
            1, nxt).squeeze(1)
        count_above = count_above + torch.cat([above_n, pad], 1).gather(
            1, nxt).squeeze(1)
        count = hist_n.gather(1, hit.unsqueeze(1)).squeeze(1)
        act = _with_range(*_compact(act.values, act.weights,
                                    b == hit.to(b.dtype).unsqueeze(1)))
    return _gathered_ties(act, need, mass_above, count_above, count)


def _gathered_ties(act: _Active, need: Tensor, mass_above: Tensor,
                   count_above: Tensor, count: Tensor) -> _Ties:
    """:class:`_Ties` from the remaining candidates of every rank (one
    all-gather); rows of one repeated value only gather their counts."""
    rows, width = act.values.shape
    dev = act.values.device
    tied = act.hi == act.lo
    valid = act.valid if act.valid is not None else torch.ones_like(
        act.values, dtype=torch.bool)
    n_local = valid.sum(dim=1)
    if act.weights is None:
        w = valid.to(torch.float64)
    else:
        w = torch.where(valid, act.weights.to(torch.float64), 0.0)
    cols = max(int(torch.where(tied, 0, act.width).max()), 1)
    vals = act.values.double()
    if width < cols:
        vals = torch.cat([vals, vals.new_zeros(rows, cols - width)], 1)
        w_pad = torch.cat([w, w.new_zeros(rows, cols - width)], 1)
    else:
        vals, w_pad = vals[:, :cols], w[:, :cols]
    table = _all_gather(torch.cat([
        vals, w_pad, n_local.double().unsqueeze(1),
        w.amax(dim=1, keepdim=True)], 1))
    world = table.size(0)
    rank = dist.get_rank() if world > 1 else 0
    ranks_n = table[:, :, 2 * cols].long()  # (W, B)
    before_tied = ranks_n[:rank].sum(dim=0)
    w_tied = table[:, :, 2 * cols + 1].amax(dim=0)
    # the candidates of all ranks in rank order, then column order
    m_v = table[:, :, :cols].permute(1, 0, 2).reshape(rows, -1)
    m_w = table[:, :, cols:2 * cols].permute(1, 0, 2).reshape(rows, -1)
    slot = torch.arange(cols, device=dev)
    m_ok = (slot < ranks_n.t().unsqueeze(2)) & ~tied.view(-1, 1, 1)
    m_ok = m_ok.reshape(rows, -1)
    m_r = torch.arange(world, device=dev).repeat_interleave(cols)
    # value descending, stable (rank, column), padding last
    order = m_v.sort(dim=1, descending=True, stable=True)[1]
    order = order.gather(1, m_ok.gather(1, order).to(torch.uint8).sort(
        dim=1, descending=True, stable=True)[1])
    s_v, s_w, s_ok = (x.gather(1, order) for x in (m_v, m_w, m_ok))
    s_r = m_r.expand(rows, -1).gather(1, order)
    cum = mass_above.unsqueeze(1) + torch.where(s_ok, s_w, 0.0).cumsum(1)
    reach = s_ok & (cum >= need.unsqueeze(1))
    last = (s_ok.sum(dim=1) - 1).clamp(min=0)
    j = torch.where(reach.any(dim=1), reach.to(torch.uint8).argmax(dim=1),
                    last)
    v = s_v.gather(1, j.unsqueeze(1))
    gt = s_ok & (s_v > v)
    eq = s_ok & (s_v == v)
    v = torch.where(tied, act.lo, v.squeeze(1)).to(act.values.dtype)
    n_gt = gt.sum(dim=1)
    c_gt = torch.where(gt, s_w, 0.0).sum(dim=1)
    return _Ties(
        v,
        count_above.long() + torch.where(tied, 0, n_gt),
        mass_above + torch.where(tied, 0.0, c_gt),
        torch.where(tied, count.long(), eq.sum(dim=1)),
        torch.where(tied, w_tied, torch.where(eq, s_w, 0.0).amax(dim=1)),
        torch.where(tied, before_tied, (eq & (s_r < rank)).sum(dim=1)),
        torch.where(tied, n_local, (eq & (s_r == rank)).sum(dim=1)))


def _first_in_ties(ties: _Ties, need: Tensor) -> Tensor:
    """The first tie ``j`` (0-based) at which the cumulative weight
    ``c_above + (j + 1) w_tie`` reaches ``need``."""
    j = torch.ceil((need - ties.c_above) / ties.w_tie) - 1
    j = j.clamp(min=0).long().clamp(max=(ties.n_tie - 1).clamp(min=0))
    # guard the division's rounding
    c_j = ties.c_above + (j + 1) * ties.w_tie
    j = torch.where((c_j < need) & (j + 1 < ties.n_tie), j + 1, j)
    back = (j > 0) & (ties.c_above + j * ties.w_tie >= need)
    return torch.where(back, j - 1, j)


def _eq3_k(ties: _Ties, need: Tensor) -> Tensor:
    """Eq. 3 inside the tie group: the first position whose cumulative
    mass reaches ``need`` and the first minimum of ``|cum - need|``."""
    j = _first_in_ties(ties, need)
    c_prev = ties.c_above + j * ties.w_tie
    c_j = c_prev + ties.w_tie
    pos = ties.n_above + j  # 0-based position of the first cum >= need
    take_prev = (pos > 0) & ((need - c_prev) <= (c_j - need))
    return torch.where(take_prev, pos, pos + 1)


def _mask(values: Tensor, ties: _Ties, k: Tensor) -> Tensor:
    """First ``k`` of the global order: above ``v`` plus the first ties."""
    take = k - ties.n_above
    v = ties.v.unsqueeze(1)
    every = take >= ties.before + ties.local_tie  # all local ties are in
    if bool((every | (take <= ties.before)).all()):  # all or none of them
        # x > v is x >= the next float above v
        above = torch.nextafter(v, v.new_tensor(float('inf')))
        return values >= torch.where(every.unsqueeze(1), v, above)
    take = take.unsqueeze(1)
    tied = values == v
    tie_rank = ties.before.unsqueeze(1) + tied.long().cumsum(dim=1) - 1
    return (values > ties.v.unsqueeze(1)) | (tied & (tie_rank < take))


def _force_target(mask: Tensor, values: Tensor, offset: int,
                  gt_label: Tensor) -> Tensor:
    """Swap the target in for the last class of :math:`\\Phi` (lowest
    value, then highest global column) where it is missing; keeps k.

    Only the rows whose target is missing on every rank are searched (the
    target's own column is looked up per row), and only their two changed
    columns are written."""
    rows, cols = mask.shape
    local_gt = gt_label - offset
    own_gt = (local_gt >= 0) & (local_gt < cols)
    gt_col = local_gt.clamp(0, cols - 1)
    row = torch.arange(rows, device=mask.device)
    has = own_gt & mask[row, gt_col]
    miss = (global_max(has.long()) == 0).nonzero().squeeze(1)
    if miss.numel() == 0:  # the same on every rank (reduced)
        return mask
    sub_mask, sub_values = mask[miss], values[miss]
    inf = torch.tensor(float('inf'), dtype=values.dtype, device=values.device)
    v_last = -global_max((-torch.where(sub_mask, sub_values, inf)).amax(1))
    last = sub_mask & (sub_values == v_last.unsqueeze(1))
    gidx = torch.arange(offset, offset + cols, device=mask.device)
    g_last = global_max(torch.where(last, gidx, -1).amax(dim=1))
    mask = mask.clone()
    mine = (g_last >= offset) & (g_last < offset + cols)
    mask[miss[mine], g_last[mine] - offset] = False
    add = own_gt[miss]
    mask[miss[add], gt_col[miss][add]] = True
    return mask


def sharded_group_classes(ranking_logits: Tensor,
                          stats: Optional[SoftmaxStats],
                          offset: int,
                          num_columns: int,
                          *,
                          tau: float = 0.93,
                          k: Optional[Tensor] = None,
                          gt_label: Optional[Tensor] = None
                          ) -> ShardedGrouping:
    r"""The primary group of eq. 3 (``k=None``) or of a given ``k`` on the
    local columns, optionally forcing ``gt_label`` into :math:`\Phi`.

    Args:
        ranking_logits (Tensor): Local columns (B, C_l) of the ranking
            network's logits.
        stats (SoftmaxStats, optional): Their statistics at the loss
            temperature with the global shift and the global ``sumexp``
            (:func:`sharded_softmax_stats`); needed when ``k`` is None.
        offset (int): Global index of the first local column.
        num_columns (int): Global number of columns ``C``.
        tau (float): :math:`\tau`. Defaults to 0.93.
        k (Tensor, optional): (B, ) group sizes instead of eq. 3.
        gt_label (Tensor, optional): (B, ) global columns to force in.

    Returns:
        ShardedGrouping: The local mask and k (replicated).
    """
    with torch.no_grad():
        r = ranking_logits.detach()
        rows = r.size(0)
        if k is None and tau >= 1.0:  # only U has mass 1 (single-process)
            k = torch.full((rows, ), num_columns, dtype=torch.long,
                           device=r.device)
        if k is not None:
            k = k.to(r.device).long().clamp(1, num_columns)
            ties = _crossing_ties(r, None, k.double(), num_columns)
        else:
            need = stats.sumexp.to(torch.float64) * tau
            ties = _crossing_ties(r, stats.exp, need, num_columns)
            k = _eq3_k(ties, need)
        mask = _mask(r, ties, k)
        if gt_label is not None:
            mask = _force_target(mask, r, offset, gt_label.long())
        return ShardedGrouping(mask, k)


def sharded_batch_k(ranking_logits: Tensor, stats: SoftmaxStats,
                    num_columns: int, tau: float = 0.93,
                    step: int = 100) -> Tensor:
    """The authors' batch-level k (see
    :func:`~mmfacekd.models.losses.gkd.selection.select_batch_k`) across
    shards: the class masses of the batch-summed softmax at T = 1
    (``stats`` at T = 1, global shift and sum), the first position ``K``
    of their descending global cumsum reaching ``tau * B``, then the first
    grid point ``1 + i * step >= K`` below ``C`` (``C`` if none)."""
    with torch.no_grad():
        rows = ranking_logits.size(0)
        mass = (stats.exp / stats.sumexp.unsqueeze(1)).sum(dim=0,
                                                            keepdim=True)
        need = mass.new_full((1, ), tau * rows, dtype=torch.float64)
        ties = _crossing_ties(mass, mass, need, num_columns)
        first = ties.n_above + _first_in_ties(ties, need)  # K - 1
        grid = 1 + torch.ceil(first.double() / step).long() * step
        k = torch.where(grid < num_columns, grid,
                        torch.full_like(grid, num_columns))
        return k.expand(rows)


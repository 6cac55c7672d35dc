r"""GKD eq. 2-3 on class-sharded logits: the primary group :math:`\Phi`
and its size :math:`k` when each rank holds all rows of the global batch
but only its columns.

Zhao et al., *Grouped Knowledge Distillation for Deep Face Recognition*
(AAAI 2023), eq. 3: with :math:`\tilde{p}` the softened prediction of the
ranking network sorted in descending order (ties: lower global column
first, as the stable sort of :mod:`mmfacekd.models.losses.gkd.selection`),
:math:`k = \arg\min_k |\sum_{i \le k} \tilde{p}_i - \tau|` (first minimum).

Exact search across shards, without gathering the logits: each rank sorts
its own columns once; a per-row **candidate search on the logit value**
(:func:`_crossing_value`: every rank proposes a few of its own logits per
round, the global mass at each is all-reduced, the bracket shrinks by the
number of candidates per round) finds the value :math:`v^*` of the first
class at which the global cumulative mass reaches :math:`\tau` (masses are
float64 sums of each rank's prefix sums). The ties at :math:`v^*` are
counted per rank and ordered by global column (rank order, then local
column), which places the crossing inside the tie group and decides the
first minimum of eq. 3 exactly as the single-process code does. A given
:math:`k` (``fixed`` and ``batch`` modes) uses the same search on counts
instead of masses.

Floating point: the global masses are summed in another order than the
single-process ``cumsum``, so in float32 a row whose cumulative mass lies
within rounding of :math:`\tau` may get a ``k`` one apart (as between the
two single-process paths); in float64 and for exactly representable masses
(ties) the results are identical (tested on 1, 2 and 4 gloo ranks).
"""
from typing import NamedTuple, Optional

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


#: candidates each rank proposes per round of the crossing search
CANDIDATES = 16


def _all_gather(x: Tensor) -> Tensor:
    """(W, ...) stack of ``x`` of every rank (rank order), no grad."""
    if get_world_size() == 1:
        return x.unsqueeze(0)
    out = [torch.empty_like(x) for _ in range(get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.stack(out)


class _LocalOrder:
    """One rank's columns sorted descending, with float64 prefix weights
    (``weights=None``: counts)."""

    def __init__(self, values: Tensor, weights: Optional[Tensor]) -> None:
        self.values, order = values.sort(dim=1, descending=True, stable=True)
        self.ascending = (-self.values).contiguous()
        self.weights = None if weights is None else weights.gather(1, order)
        if weights is not None:
            cum = self.weights.to(torch.float64).cumsum(dim=1)
            self.prefix = torch.cat([cum.new_zeros(cum.size(0), 1), cum], 1)

    def count_ge(self, v: Tensor) -> Tensor:
        """Local columns ``>= v`` per row, ``v`` (B, ) or (B, K)."""
        v2 = v.unsqueeze(1) if v.dim() == 1 else v
        n = torch.searchsorted(self.ascending, -v2, right=True)
        return n.squeeze(1) if v.dim() == 1 else n

    def count_gt(self, v: Tensor) -> Tensor:
        """Local columns ``> v`` per row, ``v`` (B, )."""
        return torch.searchsorted(self.ascending, -v.unsqueeze(1)).squeeze(1)

    def mass(self, n: Tensor) -> Tensor:
        """Weight of the local top-``n`` columns, ``n`` (B, ) or (B, K)."""
        if self.weights is None:
            return n.to(torch.float64)
        n2 = n.unsqueeze(1) if n.dim() == 1 else n
        m = self.prefix.gather(1, n2)
        return m.squeeze(1) if n.dim() == 1 else m

    def weight_at(self, n: Tensor) -> Tensor:
        """Weight of the local n-th ranked column (0 past the end)."""
        if self.weights is None:
            return torch.ones(n.shape, dtype=torch.float64, device=n.device)
        width = self.weights.size(1)
        w = self.weights.gather(1, n.clamp(max=width - 1).unsqueeze(1))
        return torch.where(n < width, w.squeeze(1).to(torch.float64), 0.0)


def _crossing_value(order: _LocalOrder, need: Tensor) -> Tensor:
    """Per row the largest logit ``v`` whose global weight of columns
    ``>= v`` reaches ``need`` (needs ``need`` <= the total weight).

    A bracket ``[low, high)`` of logit values holds ``v`` (``low`` reaches
    ``need``, ``high`` does not). Each round every rank proposes
    :data:`CANDIDATES` evenly spaced columns of its own inside the bracket
    (all-gather), the global weight at every candidate is all-reduced and
    the bracket shrinks to two neighbouring candidates: each rank's share of
    the bracket shrinks by ``CANDIDATES`` per round, and the search ends on
    an actual logit once no column is strictly inside (about
    ``log(C_local) / log(CANDIDATES) + 2`` rounds of two collectives).
    """
    vals = order.values
    rows, width = vals.shape
    low = -global_max(-vals[:, -1])  # global minimum: reaches any need
    high = torch.full_like(low, float('inf'))
    steps = torch.arange(CANDIDATES, device=vals.device)
    neg_inf = vals.new_tensor(float('-inf'))
    while True:
        first = order.count_ge(high)  # the bracket: local positions
        inside = order.count_gt(low) - first  # [first, first + inside)
        pos = first.unsqueeze(1) + steps * inside.unsqueeze(1) // CANDIDATES
        cand = vals.gather(1, pos.clamp(max=width - 1))
        cand = torch.where(inside.unsqueeze(1) > 0, cand, low.unsqueeze(1))
        table = _all_gather(torch.cat(
            [cand.double(), inside.double().unsqueeze(1)], dim=1))
        if not bool((table[:, :, -1].sum(dim=0) > 0).any()):
            return low  # replicated: every rank stops in the same round
        cand = table[:, :, :-1].transpose(0, 1).reshape(rows, -1)
        cand = cand.to(vals.dtype)
        mass = replicated_sum(order.mass(order.count_ge(cand)))
        ok = mass >= need.unsqueeze(1)
        low = torch.maximum(low, torch.where(ok, cand, neg_inf).amax(dim=1))
        high = torch.minimum(high,
                             torch.where(ok, -neg_inf, cand).amin(dim=1))


class _Ties(NamedTuple):
    """Global counts at the crossing value ``v``: ``n_above`` columns
    above ``v``, their weight ``c_above``, ``n_tie`` columns equal to ``v``
    of weight ``w_tie`` each, and the local tie-rank offset ``before``
    (ties of lower ranks)."""
    v: Tensor
    n_above: Tensor
    c_above: Tensor
    n_tie: Tensor
    w_tie: Tensor
    before: Tensor


def _ties_at(order: _LocalOrder, v: Tensor) -> _Ties:
    n_gt, n_ge = order.count_gt(v), order.count_ge(v)
    local_tie = n_ge - n_gt
    sums = replicated_sum(torch.stack(
        [order.mass(n_gt), n_gt.to(torch.float64),
         local_tie.to(torch.float64)], dim=1))
    w_tie = global_max(torch.where(local_tie > 0, order.weight_at(n_gt), 0.0))
    before = torch.zeros_like(local_tie)
    if get_world_size() > 1:
        per_rank = [torch.empty_like(local_tie)
                    for _ in range(get_world_size())]
        dist.all_gather(per_rank, local_tie.contiguous())
        rank = dist.get_rank()
        if rank:
            before = torch.stack(per_rank[:rank]).sum(dim=0)
    return _Ties(v, sums[:, 1].long(), sums[:, 0], sums[:, 2].long(), w_tie,
                 before)


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
    take = (k - ties.n_above).unsqueeze(1)
    tied = values == ties.v.unsqueeze(1)
    tie_rank = ties.before.unsqueeze(1) + tied.long().cumsum(dim=1) - 1
    return (values > ties.v.unsqueeze(1)) | (tied & (tie_rank < take))


def _force_target(mask: Tensor, values: Tensor, offset: int,
                  gt_label: Tensor) -> Tensor:
    """Swap the target in for the last class of :math:`\\Phi` (lowest
    value, then highest global column) where it is missing; keeps k."""
    cols = mask.size(1)
    gidx = torch.arange(offset, offset + cols, device=mask.device)
    inf = torch.tensor(float('inf'), dtype=values.dtype, device=values.device)
    v_last = -global_max((-torch.where(mask, values, inf)).amax(dim=1))
    last = mask & (values == v_last.unsqueeze(1))
    g_last = global_max(torch.where(last, gidx, -1).amax(dim=1))
    local_gt = gt_label - offset
    own_gt = (local_gt >= 0) & (local_gt < cols)
    gt_col = local_gt.clamp(0, cols - 1).unsqueeze(1)
    has = own_gt & mask.gather(1, gt_col).squeeze(1)
    miss = global_max(has.long()) == 0
    mask = mask.clone()
    drop = miss.unsqueeze(1) & (gidx.unsqueeze(0) == g_last.unsqueeze(1))
    mask &= ~drop
    add = (miss & own_gt).unsqueeze(1) & (gidx.unsqueeze(0)
                                          == gt_label.unsqueeze(1))
    return mask | add


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
            order = _LocalOrder(r, None)
            ties = _ties_at(order, _crossing_value(order, k.double()))
        else:
            order = _LocalOrder(r, stats.exp)
            need = stats.sumexp.to(torch.float64) * tau
            ties = _ties_at(order, _crossing_value(order, need))
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
        order = _LocalOrder(mass, mass)
        need = mass.new_full((1, ), tau * rows, dtype=torch.float64)
        ties = _ties_at(order, _crossing_value(order, need))
        first = ties.n_above + _first_in_ties(ties, need)  # K - 1
        grid = 1 + torch.ceil(first.double() / step).long() * step
        k = torch.where(grid < num_columns, grid,
                        torch.full_like(grid, num_columns))
        return k.expand(rows)


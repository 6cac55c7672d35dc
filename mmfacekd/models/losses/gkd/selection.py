r"""GKD eq. 2-3: the primary group :math:`\Phi` and its size :math:`k`.

Zhao et al., *Grouped Knowledge Distillation for Deep Face Recognition*
(AAAI 2023), see ``docs/papers.md`` §1. Symbols: :math:`C` classes, logits
:math:`z` of the ranking network, temperature :math:`T`, softened
prediction :math:`\tilde{p} = \mathrm{softmax}(z / T)` sorted in descending
order, threshold :math:`\tau`, primary group :math:`\Phi` (top-:math:`k`
classes), secondary group :math:`\Psi = U \setminus \Phi`.

* eq. 3, per-sample :math:`k`: :func:`select_primary_k`;
* the authors' batch-level :math:`k`: :func:`select_batch_k`;
* eq. 2, :math:`\Phi` as a mask (optionally with the forced target):
  :func:`primary_group_mask`, and :func:`group_classes` used by the loss.

Two exact implementations give the same :math:`k` and masks (bit-identical
in float64; float32 see below; ties go to the lower class index, as in a
stable descending sort):

* ``'sort'``: sort each row descending (stable), cumsum, count. No host
  syncs; the default on CUDA.
* ``'band'``: the sampled band search of :mod:`.band_search`, which never
  sorts whole rows (host syncs; meant for CPU).

``'auto'`` = ``'band'`` on CPU with more than 30,000 classes, ``'sort'``
otherwise (CUDA always), by measurement:
``tools/analysis/benchmark_gkd_selection.py --threads 2`` (float32, tau=0.93,
2 threads on a shared 2-core machine under load 7-12, so +-30 % noise;
ratio = sort / band median time, > 1: band faster; ``select`` = k + mask,
``step`` = GKDLoss forward + backward)::

    regime    B      C  T      k   select ratio   step ratio
    init     64    300  1     35       2.58          1.07
    init     64    300  4    233       4.17          0.94
    trained  64    300  1     16       1.65          0.98
    trained  64    300  4    222       1.12          0.67
    init    128  10000  1    917       1.60          1.57
    init    128  10000  4   7791       0.37          0.67
    trained 128  10000  1    338       1.16          2.12
    trained 128  10000  4   7495       0.60          0.68
    init    128  30000  1   2688       1.21          0.97
    init    128  30000  4  23370       0.63          0.59
    trained 128  30000  1   1104       0.82          1.07
    trained 128  30000  4  22501       1.03          1.30
    init    128  85742  1   7564       1.50          1.58
    init    128  85742  4  66785       2.27          1.65
    trained 128  85742  1   3109       2.22          1.48
    trained 128  85742  4  64336       1.70          1.62

At the paper's C = 85,742 the band search is 1.5-2.3x faster on CPU
(select: 2.2-4.2 s vs 3.9-5.1 s at B=128), so it stays as the CPU path
there. At the demo size (B=64, C=300, where the band path is itself a row
sort) and from 10k to 30k classes the whole step is as fast or faster with
the plain sort (step ratio 0.59-1.07 at T = 4, the headline temperature),
so the simple path is the default everywhere else. On CPU both still differ
from the float64 argmin by one class in rare float32 rows (a rounding tie;
~1 row of 128 at C=85,742), not always the same row: float32 k agrees
between the paths only up to that; float64 results are identical.
"""
from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from .band_search import Window, descending_window
from .softmax import SoftmaxStats, softmax_stats

SELECTIONS = ('auto', 'sort', 'band')
#: 'auto' takes the band search on CPU above this many classes only
BAND_MIN_CLASSES = 30000


class Grouping(NamedTuple):
    """A primary group: float 0/1 ``mask`` (B, C), ``k`` (B, ) and the
    ranking network's exact ``phi_exp_sum`` (sum of its
    ``SoftmaxStats.exp`` over :math:`\\Phi`, None when not computed)."""
    mask: Tensor
    k: Tensor
    phi_exp_sum: Optional[Tensor]


class _Crossing(NamedTuple):
    """k per row, the value and column of the k-th ranked class (column -1
    when unknown) and the ranking network's primary ``exp`` sum (or None)."""
    k: Tensor
    kth_value: Tensor
    kth_index: Tensor
    phi_exp_sum: Optional[Tensor]


def resolve_selection(selection: str, logits: Tensor) -> str:
    """``'sort'`` or ``'band'`` for ``selection`` on these logits."""
    if selection not in SELECTIONS:
        raise ValueError(f'selection must be one of {SELECTIONS}, '
                         f'got {selection!r}')
    if selection == 'auto':
        # the band search pays only on CPU with many classes (measured above)
        if logits.device.type == 'cpu' and logits.size(-1) > BAND_MIN_CLASSES:
            return 'band'
        return 'sort'
    return selection


def _full_window(values: Tensor, order: Tensor,
                 weights: Optional[Tensor]) -> Window:
    """A whole sorted row as a :class:`Window` (nothing ranked above it)."""
    if weights is None:
        cum = torch.arange(1, values.size(1) + 1, device=values.device,
                           dtype=torch.float64).expand(values.size(0), -1)
    else:
        cum = weights.gather(1, order).cumsum(dim=1)
    zeros = torch.zeros(values.size(0), dtype=torch.long,
                        device=values.device)
    return Window(values, order, cum, zeros, cum.new_zeros(values.size(0)))


def _eq3_argmin(win: Window, need: Tensor) -> Tuple[_Crossing, Tensor]:
    r"""Eq. 3 on a window of the descending order: the first
    :math:`\arg\min_k |\sum_{i \le k} \tilde{p}_i - \tau|`, unnormalised
    (``need`` = :math:`\tau \sum_U e`, ``win.cum`` = prefix sums of
    :math:`e`). Also returns whether each row's mass reaches ``need``."""
    cum = win.cum
    width = cum.size(1)
    found = cum[:, -1] >= need
    pos = (cum < need.unsqueeze(1)).sum(dim=1).clamp(max=width - 1)
    c_j = cum.gather(1, pos.unsqueeze(1)).squeeze(1)
    c_prev = cum.gather(1, (pos - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    c_prev = torch.where(pos > 0, c_prev, win.c_above)
    has_prev = (pos > 0) | (win.n_above > 0)
    # first minimum: k - 1 on a tie, and the start of a plateau of equal
    # cumulative sums.
    take_prev = has_prev & ((need - c_prev) <= (c_j - need))
    plateau = (cum < c_prev.unsqueeze(1)).sum(dim=1)
    k_prev = torch.where(pos > 0, win.n_above + plateau + 1, win.n_above)
    k = torch.where(take_prev, k_prev, win.n_above + pos + 1)
    phi_mass = torch.where(take_prev, c_prev, c_j)
    rel = k - win.n_above - 1
    in_win = rel >= 0
    rel_c = rel.clamp(min=0).unsqueeze(1)
    kth_val = win.values.gather(1, rel_c).squeeze(1)
    kth_idx = win.index.gather(1, rel_c).squeeze(1)
    # k-th class just above the window: Phi = {x > first window value}.
    above = torch.nextafter(win.values[:, 0],
                            win.values.new_tensor(float('inf')))
    kth_val = torch.where(in_win, kth_val, above)
    kth_idx = torch.where(in_win, kth_idx, torch.full_like(kth_idx, -1))
    return _Crossing(k, kth_val, kth_idx, phi_mass), found


def _per_sample_crossing(r: Tensor, tau: float, stats: SoftmaxStats,
                         method: str,
                         buffers: Optional[Tuple[Tensor, ...]] = None
                         ) -> Tuple[_Crossing, Optional[Tensor]]:
    """Eq. 3 per row; also the full stable descending order (sort path)."""
    rows_n, num_classes = r.shape
    full_k = torch.full((rows_n, ), num_classes, dtype=torch.long,
                        device=r.device)
    order = None
    if tau >= 1.0:  # only U itself has mass exactly 1: Phi = U, Psi empty
        minus_inf = r.new_full((rows_n, ), float('-inf'))
        return _Crossing(full_k, minus_inf, torch.full_like(full_k, -1),
                         stats.sumexp), order
    need = stats.sumexp * tau
    if method == 'sort':
        values, order = r.sort(dim=1, descending=True, stable=True)
        win = _full_window(values, order, stats.exp)
    else:
        win = descending_window(r, stats.exp, need, stats.sumexp, buffers)
    cross, found = _eq3_argmin(win, need)
    # a row whose floating-point mass never reaches tau: k = C
    last = order[:, -1] if order is not None else torch.full_like(full_k, -1)
    return _Crossing(
        torch.where(found, cross.k, full_k),
        torch.where(found, cross.kth_value, r.new_tensor(float('-inf'))),
        torch.where(found, cross.kth_index, last),
        torch.where(found, cross.phi_exp_sum, stats.sumexp)), order


def _top_k_crossing(r: Tensor, k: Tensor, method: str,
                    buffers: Optional[Tuple[Tensor, ...]] = None
                    ) -> Tuple[_Crossing, Optional[Tensor]]:
    """Value and column of the k-th largest entry per row (no mass)."""
    rows_n, num_classes = r.shape
    k = k.clamp(1, num_classes)
    if method == 'sort':
        values, order = r.sort(dim=1, descending=True, stable=True)
        rel = (k - 1).unsqueeze(1)
        return _Crossing(k, values.gather(1, rel).squeeze(1),
                         order.gather(1, rel).squeeze(1), None), order
    if bool((k >= num_classes).all()):
        return _Crossing(k, r.new_full((rows_n, ), float('-inf')),
                         torch.full_like(k, -1), None), None
    total = torch.full((rows_n, ), float(num_classes), dtype=torch.float64,
                       device=r.device)
    win = descending_window(r, None, k.to(torch.float64), total, buffers)
    rel = (k - win.n_above - 1).clamp(min=0).unsqueeze(1)
    kth_val = win.values.gather(1, rel).squeeze(1)
    kth_val = torch.where(k >= num_classes,
                          torch.full_like(kth_val, float('-inf')), kth_val)
    return _Crossing(k, kth_val, win.index.gather(1, rel).squeeze(1),
                     None), None


def _mask_from_order(order: Tensor, cross: _Crossing, dtype: torch.dtype,
                     out: Optional[Tensor]) -> Tensor:
    """Sort path: the first k of the stable order, without host syncs."""
    ranks = torch.arange(order.size(1), device=order.device)
    top = (ranks < cross.k.unsqueeze(1)).to(dtype)
    out = torch.empty(order.shape, dtype=dtype, device=order.device) \
        if out is None else out
    return out.scatter_(1, order, top)  # order is a permutation


def _mask_from_threshold(r: Tensor, cross: _Crossing, out: Optional[Tensor],
                         resolve_kth: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """Band path: ``r >= kth_value``; rows with ties at the k-th value take
    the first k of a stable sort. Returns (mask, kth_index, tie rows); with
    ``resolve_kth`` an unknown k-th column (-1) is looked up."""
    kth = cross.kth_value.unsqueeze(1)
    mask = torch.ge(r, kth, out=out) if out is not None \
        else (r >= kth).to(r.dtype)
    kth_idx = cross.kth_index
    tie_rows = (mask.sum(dim=1) != cross.k.to(mask.dtype)).nonzero()
    tie_rows = tie_rows.squeeze(1)
    if tie_rows.numel():
        kth_idx = kth_idx.clone()
        for row in tie_rows.tolist():
            top = r[row].sort(descending=True, stable=True).indices
            top = top[:int(cross.k[row])]
            mask[row] = 0
            mask[row, top] = 1
            kth_idx[row] = top[-1]
    unknown = kth_idx < 0
    if resolve_kth and bool(unknown.any()):
        # the k-th = the last of the stable order inside Phi
        rows = unknown.nonzero().squeeze(1)
        sub = r[rows].masked_fill(mask[rows] == 0, float('inf'))
        lowest = sub == sub.amin(dim=1, keepdim=True)
        cols = torch.arange(r.size(1), device=r.device)
        kth_idx = kth_idx.clone()
        kth_idx[rows] = torch.where(lowest, cols, -1).amax(dim=1)
    return mask, kth_idx, tie_rows


def _force_target(mask: Tensor, kth_idx: Tensor, gt_label: Tensor,
                  phi: Optional[Tensor], exp: Optional[Tensor]
                  ) -> Tuple[Tensor, Optional[Tensor]]:
    """Swap the target in for the k-th ranked class where it is missing
    (no host syncs); keep ``phi`` (the ranking ``exp`` sum) exact. A
    ``kth_idx`` of -1 only occurs for k = C, where nothing is missing."""
    gt = gt_label.reshape(-1).long().to(mask.device).unsqueeze(1)
    low = kth_idx.clamp(min=0).unsqueeze(1)
    miss = mask.gather(1, gt) == 0
    mask.scatter_(1, low, (~miss).to(mask.dtype))
    mask.scatter_(1, gt, 1.0)
    if phi is not None:
        # a direct sum: phi - exp[low] + exp[gt] cancels when the swapped-out
        # class holds most of the mass (1e-3 relative error in float32)
        phi = torch.where(miss[:, 0], (exp * mask).sum(dim=1), phi)
    return mask, phi


def group_classes(ranking_logits: Tensor,
                  stats: Optional[SoftmaxStats],
                  *,
                  tau: float = 0.93,
                  k: Optional[Tensor] = None,
                  gt_label: Optional[Tensor] = None,
                  selection: str = 'auto',
                  out: Optional[Tensor] = None,
                  buffers: Optional[Tuple[Tensor, ...]] = None) -> Grouping:
    r"""The primary group of the loss: eq. 3 (``k=None``) or a given ``k``,
    optionally forcing ``gt_label`` into :math:`\Phi` (size kept).

    Args:
        ranking_logits (Tensor): Logits (B, C) of the ranking network.
        stats (SoftmaxStats, optional): Its :func:`softmax_stats` at the
            loss temperature; needed when ``k`` is None.
        tau (float): :math:`\tau` of eq. 3. Defaults to 0.93.
        k (Tensor, optional): (B, ) group sizes instead of eq. 3.
        gt_label (Tensor, optional): Labels (B, ) to force into
            :math:`\Phi`. Defaults to None.
        selection (str): ``'auto'``, ``'sort'`` or ``'band'``.
        out (Tensor, optional): A (B, C) float buffer for the mask.
        buffers (tuple[Tensor, ...], optional): Work buffers of the band
            search (a float and a bool (B, C) buffer).

    Returns:
        Grouping: float 0/1 mask, k and the exact ranking ``exp`` sum over
        :math:`\Phi` (None for a given ``k``).
    """
    r = ranking_logits.detach()
    method = resolve_selection(selection, r)
    if k is None:
        cross, order = _per_sample_crossing(r, tau, stats, method, buffers)
    else:
        cross, order = _top_k_crossing(r, k, method, buffers)
    phi, kth_idx = cross.phi_exp_sum, cross.kth_index
    if order is not None:
        mask = _mask_from_order(order, cross, r.dtype, out)
    elif method == 'sort':  # tau >= 1: Phi = U
        mask = r.new_ones(r.shape) if out is None else out.fill_(1)
    else:
        mask, kth_idx, tie_rows = _mask_from_threshold(
            r, cross, out, gt_label is not None)
        if phi is not None and tie_rows.numel():
            phi = phi.clone()
            phi[tie_rows] = (stats.exp[tie_rows] * mask[tie_rows]).sum(1)
    if gt_label is not None:
        mask, phi = _force_target(mask, kth_idx, gt_label, phi,
                                  None if phi is None else stats.exp)
    return Grouping(mask, cross.k, phi)


def select_primary_k(ranking_logits: Tensor,
                     tau: float = 0.93,
                     temperature: float = 1.0,
                     stats: Optional[SoftmaxStats] = None,
                     selection: str = 'auto') -> Tensor:
    r"""Per-sample primary group size, eq. 2-3 of the GKD paper.

    With :math:`\tilde{p} = \mathrm{softmax}(z / T)` of the ranking network
    sorted in descending order,

    .. math::
        k = \mathop{\arg\min}_{k \in \{1, \dots, C\}}
        \left| \sum_{i=1}^{k} \tilde{p}_i - \tau \right|

    (first minimum on ties). :math:`\tau \geq 1` gives :math:`k = C`
    (:math:`\Phi = U`, :math:`\Psi = \emptyset`), since only the full set has
    mass exactly 1; so does a row whose floating-point mass never reaches
    :math:`\tau`.

    Args:
        ranking_logits (Tensor): Logits (B, C) of the ranking network (the
            student in the paper).
        tau (float): The threshold :math:`\tau \in (0, 1]`.
            Defaults to 0.93.
        temperature (float): Temperature of the softened prediction.
            Defaults to 1.0.
        stats (SoftmaxStats, optional): Precomputed statistics of
            ``ranking_logits / temperature``. Defaults to None.
        selection (str): ``'auto'``, ``'sort'`` or ``'band'`` (see the
            module docstring). Defaults to 'auto'.

    Returns:
        Tensor: ``k`` of shape (B, ), dtype long.
    """
    with torch.no_grad():
        r = ranking_logits.detach()
        if stats is None:
            stats = softmax_stats(r, temperature)
        method = resolve_selection(selection, r)
        return _per_sample_crossing(r, tau, stats, method)[0].k


def batch_k(ranking_logits: Tensor,
            tau: float = 0.93,
            step: int = 100,
            stats: Optional[SoftmaxStats] = None) -> Tensor:
    """:func:`select_batch_k` as a 0-dim long tensor (no host sync)."""
    with torch.no_grad():
        rows_n, num_classes = ranking_logits.shape
        if stats is not None:
            inv = (1.0 / stats.sumexp).unsqueeze(0)
            mass = torch.matmul(inv, stats.exp).squeeze(0)
        else:
            mass = torch.softmax(ranking_logits.detach(), dim=1).sum(dim=0)
        cum = mass.sort(descending=True)[0].cumsum(0)
        grid = torch.arange(1, num_classes, step, device=cum.device)
        none = torch.tensor(num_classes, device=cum.device)
        if grid.numel() == 0:
            return none
        hit = cum[grid - 1] >= tau * rows_n
        first = grid.gather(0, hit.long().argmax().unsqueeze(0))[0]
        return torch.where(hit.any(), first, none)


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
    return int(batch_k(ranking_logits, tau, step, stats))


def primary_group_mask(ranking_logits: Tensor,
                       k: Union[int, Tensor],
                       gt_label: Optional[Tensor] = None,
                       selection: str = 'auto') -> Tensor:
    r"""Boolean mask of the primary group :math:`\Phi` (eq. 2).

    :math:`\Phi` holds the top-:math:`k` classes of ``ranking_logits`` (any
    temperature gives the same order; ties go to the lower class index).
    With ``gt_label`` the ground-truth class is forced into :math:`\Phi`
    **without changing its size**: if it is not among the top-:math:`k`, it
    replaces the :math:`k`-th ranked class, i.e. :math:`\Phi =
    \mathrm{top}_{k-1} \cup \{y\}`. This equals the authors'
    ``scatter(target, 999999)`` followed by a top-:math:`k`.

    Args:
        ranking_logits (Tensor): Logits (B, C) of the ranking network.
        k (int | Tensor): Group size, scalar or (B, ); clipped to [1, C].
        gt_label (Tensor, optional): Labels (B, ) to force into
            :math:`\Phi`. Defaults to None.
        selection (str): ``'auto'``, ``'sort'`` or ``'band'``.

    Returns:
        Tensor: Bool mask of shape (B, C) with exactly ``k`` True per row.
    """
    with torch.no_grad():
        rows_n = ranking_logits.size(0)
        k = torch.as_tensor(k, device=ranking_logits.device).long()
        grouping = group_classes(ranking_logits, None, k=k.expand(rows_n),
                                 gt_label=gt_label, selection=selection)
        return grouping.mask.bool()

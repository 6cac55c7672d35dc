r"""GKD Fig. 1 for one sample: ranked softened predictions and the split.

Zhao et al., *Grouped Knowledge Distillation for Deep Face Recognition*
(AAAI 2023), Fig. 1 and eq. 2-3 (``docs/papers.md`` §1). The classes are
ranked by the softened prediction :math:`\tilde{p} = \mathrm{softmax}(z / T)`
of the ranking network (descending); the primary group :math:`\Phi` is the
top-:math:`k` with :math:`k` from eq. 3, computed by the loss's own
selection code (:func:`mmfacekd.models.losses.gkd.selection.group_classes`,
exact ``'sort'`` path), and :math:`p^T_\Phi` is the teacher's softened mass
on :math:`\Phi` (eq. 6).

:func:`gkd_prediction` turns one sample's logits into the curves,
:func:`plot_gkd_prediction` draws them (log-scale probability against rank,
the split as a vertical line with ``gid='gkd-split'`` at :math:`k + 0.5`).
``tools/analysis/plot_gkd_predictions.py`` runs it for a checkpoint pair.
"""
from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from mmfacekd.models.losses.gkd.selection import group_classes
from mmfacekd.models.losses.gkd.softmax import softmax_stats

from .figure import finish, new_axes

__all__ = ['GKDPrediction', 'gkd_prediction', 'plot_gkd_prediction',
           'SPLIT_GID']

#: ``gid`` of the vertical line that marks the primary / secondary split
SPLIT_GID = 'gkd-split'
RANK_BY = ('teacher', 'student')


class GKDPrediction(NamedTuple):
    """One sample's softened predictions in the ranking network's order.

    ``order`` holds the class indices (stable descending order of the
    ranking network's :math:`\\tilde{p}`), ``teacher`` / ``student`` the
    softened probabilities of those classes (float64), ``k`` the primary
    group size (eq. 3), ``p_phi_t`` the teacher mass on the first ``k``
    classes, ``target_rank`` the 1-based rank of the ground-truth class
    (None when not given).
    """
    order: np.ndarray
    teacher: np.ndarray
    student: np.ndarray
    k: int
    p_phi_t: float
    tau: float
    temperature: float
    rank_by: str
    target_rank: Optional[int]


def _row(logits: Tensor, name: str) -> Tensor:
    z = torch.as_tensor(logits).detach().to('cpu', torch.float64)
    if z.dim() == 2 and z.size(0) == 1:
        z = z[0]
    if z.dim() != 1 or z.numel() < 2:
        raise ValueError(f'{name}: expected the logits (C, ) or (1, C) of one '
                         f'sample with C >= 2, got shape '
                         f'{tuple(z.shape)}.')
    return z


def gkd_prediction(student_logits: Tensor,
                   teacher_logits: Tensor,
                   tau: float = 0.93,
                   temperature: float = 4.0,
                   rank_by: str = 'teacher',
                   gt_label: Optional[int] = None) -> GKDPrediction:
    r"""The curves of GKD Fig. 1 for one sample.

    Args:
        student_logits (Tensor): Student logits (C, ) or (1, C).
        teacher_logits (Tensor): Teacher logits of the same shape.
        tau (float): :math:`\tau` of eq. 3. Defaults to 0.93.
        temperature (float): :math:`T` of the softened predictions.
            Defaults to 4.0 (the project's GKD configs).
        rank_by (str): ``'teacher'`` (Fig. 1) or ``'student'`` (the network
            the paper's loss ranks by). Defaults to 'teacher'.
        gt_label (int, optional): The sample's class, marked on the plot.

    Returns:
        GKDPrediction: The ranked curves, ``k`` and :math:`p^T_\Phi`.
    """
    if rank_by not in RANK_BY:
        raise ValueError(f'rank_by must be one of {RANK_BY}, got {rank_by!r}')
    if not 0.0 < tau <= 1.0 or temperature <= 0:
        raise ValueError(f'need 0 < tau <= 1 and temperature > 0, got '
                         f'tau={tau}, temperature={temperature}')
    s = _row(student_logits, 'student_logits')
    t = _row(teacher_logits, 'teacher_logits')
    if s.shape != t.shape:
        raise ValueError(f'student logits {tuple(s.shape)} and teacher '
                         f'logits {tuple(t.shape)} differ in classes.')
    rank = (t if rank_by == 'teacher' else s).unsqueeze(0)
    grouping = group_classes(rank, softmax_stats(rank, temperature),
                             tau=tau, selection='sort')
    k = int(grouping.k[0])
    # the order of the selection's sort path: its first k classes are Phi
    order = rank[0].sort(descending=True, stable=True).indices
    p_t = torch.softmax(t / temperature, dim=0)
    p_s = torch.softmax(s / temperature, dim=0)
    p_phi_t = float((p_t * grouping.mask[0]).sum())
    target_rank = None
    if gt_label is not None:
        target_rank = int((order == int(gt_label)).nonzero()[0, 0]) + 1
    return GKDPrediction(order.numpy(), p_t[order].numpy(),
                         p_s[order].numpy(), k, p_phi_t, float(tau),
                         float(temperature), rank_by, target_rank)


def plot_gkd_prediction(pred: GKDPrediction,
                        out: Optional[str] = None,
                        title: Optional[str] = None):
    """Draw :class:`GKDPrediction` as GKD Fig. 1; save it to ``out``.

    Rank (1 = most probable for the ranking network) against the softened
    probability on a log scale: the teacher's and the student's curves, the
    primary group shaded, the split at ``k + 0.5`` (a vertical line with
    ``gid`` :data:`SPLIT_GID`) and the ground-truth class marked.

    Returns:
        matplotlib.figure.Figure: The figure (closed after saving when
        ``out`` is given; its artists stay readable).
    """
    fig, ax = new_axes((7, 4.2))
    num_classes = len(pred.order)
    ranks = np.arange(1, num_classes + 1)
    tiny = np.finfo(np.float64).tiny  # log scale: an underflowed 0 -> tiny
    ax.axvspan(0.5, pred.k + 0.5, color='tab:orange', alpha=0.12,
               label=rf'primary group $\Phi$ (top {pred.k})')
    ax.plot(ranks, np.maximum(pred.teacher, tiny), color='tab:blue', lw=1.4,
            label=r'teacher $\tilde p^T$')
    ax.plot(ranks, np.maximum(pred.student, tiny), color='tab:red', lw=1.0,
            alpha=0.8, label=r'student $\tilde p^S$')
    ax.axvline(pred.k + 0.5, color='black', ls='--', lw=1.0, gid=SPLIT_GID,
               label=rf'split at $\tau$ = {pred.tau:g}')
    if pred.target_rank is not None:
        r = pred.target_rank
        ax.plot([r], [max(pred.teacher[r - 1], tiny)], 'k*', ms=9,
                label=f'ground truth (rank {r})')
    ax.set_yscale('log')
    if num_classes > 50:
        ax.set_xscale('log')
    ax.set_xlim(0.5, num_classes + 0.5)
    ax.set_xlabel(f'class rank by the {pred.rank_by} (descending)')
    ax.set_ylabel(rf'softened probability, $T$ = {pred.temperature:g}')
    ax.set_title(title or (
        rf'GKD eq. 3: $k$ = {pred.k} of {num_classes}, '
        rf'$p^T_\Phi$ = {pred.p_phi_t:.3f}, $T$ = {pred.temperature:g}'))
    return finish(fig, ax, out, 'lower left')

r"""GKD eq. 11: the registered :class:`GKDLoss`.

Zhao et al., *Grouped Knowledge Distillation for Deep Face Recognition*
(AAAI 2023), see ``docs/papers.md`` §1. The grouping (eq. 2-3) is in
:mod:`.selection`, the KL terms (eq. 5, 6, 9) in :mod:`.grouped_kl`.
"""
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from mmfacekd.registry import MODELS

from ..utils import check_logits_pair
from .grouped_kl import GroupedKLTerms, grouped_kl_terms
from .regime import RegimeWatch
from .selection import (
    SELECTIONS,
    Grouping,
    batch_k,
    group_classes,
    resolve_selection,
)
from .softmax import SoftmaxStats, softmax_stats
from .workspace import Workspace


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
    ``force_target=True``, ``temperature=4`` (see ``docs/papers.md``).
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
            across steps (see :class:`Workspace`; about 3 B x C floats stay
            allocated between steps). Defaults to True.
        selection (str): How :math:`k` and :math:`\Phi` are found, with
            identical results: ``'sort'`` (full sort, no host syncs),
            ``'band'`` (sampled band search, CPU) or ``'auto'`` (sort on
            CUDA; on CPU as measured in :mod:`.selection`).
            Defaults to 'auto'.
        degenerate_warn_iters (int): Warn once when the batch-mean
            :math:`k` stays :math:`\leq 2` for this many consecutive training
            calls (Primary-KD is then a KL over one class); 0 disables.
            Defaults to 100.
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
                 reuse_buffers: bool = True,
                 selection: str = 'auto',
                 degenerate_warn_iters: int = 100):
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
        if selection not in SELECTIONS:
            raise ValueError(f'unknown selection {selection!r}')
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        if fixed_k < 1 or batch_k_step < 1 or degenerate_warn_iters < 0:
            raise ValueError('fixed_k and batch_k_step must be >= 1, '
                             'degenerate_warn_iters >= 0')
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
        self.selection = selection
        self.degenerate_warn_iters = int(degenerate_warn_iters)
        self._workspace = Workspace()
        self._regime = RegimeWatch(self.degenerate_warn_iters)

    def _group(self,
               student: Tensor,
               teacher: Tensor,
               gt_label: Optional[Tensor],
               stats: Tuple[SoftmaxStats, SoftmaxStats],
               out: Optional[Tensor] = None,
               scratch: Optional[Tensor] = None) -> Grouping:
        """Eq. 2-3 (or the authors' k) on the ranking network."""
        by_student = self.rank_by == 'student'
        rank = student if by_student else teacher
        rank_stats = stats[0] if by_student else stats[1]
        if self.force_target and gt_label is None:
            raise ValueError('force_target=True needs gt_label')
        method = resolve_selection(self.selection, rank)
        ws = self._workspace_for(rank)
        flags = None
        if method == 'band' and out is not None:
            flags = ws.take(rank, torch.bool) if ws is not None \
                else torch.empty_like(rank, dtype=torch.bool)
        k = None
        if self.k_mode == 'batch':
            k = batch_k(rank, self.tau, self.batch_k_step,
                        rank_stats if self.temperature == 1.0 else None)
            k = k.expand(rank.size(0))
        elif self.k_mode == 'fixed':
            k = rank.new_full((rank.size(0), ), min(self.fixed_k,
                                                    rank.size(1)),
                              dtype=torch.long)
        grouping = group_classes(
            rank, rank_stats, tau=self.tau, k=k,
            gt_label=gt_label if self.force_target else None,
            selection=method, out=out,
            buffers=None if flags is None else (out, scratch, flags))
        if ws is not None and flags is not None:
            ws.give(flags)
        return grouping

    def _workspace_for(self, logits: Tensor) -> Optional[Workspace]:
        cpu = logits.device.type == 'cpu'
        return self._workspace if self.reuse_buffers and cpu else None

    @torch.no_grad()
    def primary_mask(self,
                     student_logits: Tensor,
                     teacher_logits: Tensor,
                     gt_label: Optional[Tensor] = None) -> Tensor:
        """The primary-group mask this loss uses for a batch: a bool
        tensor (B, C); the arguments are those of :meth:`forward`."""
        s, t = student_logits.detach(), teacher_logits.detach()
        stats = (softmax_stats(s, self.temperature),
                 softmax_stats(t, self.temperature))
        return self._group(s, t, gt_label, stats).mask.bool()

    def eq11_per_sample(self, terms: GroupedKLTerms) -> Tensor:
        r"""Eq. 11 per sample: :math:`\lambda_1` Primary-KD :math:`+
        \lambda_2` Binary-KD (:math:`+ \lambda_3` Secondary-KD), with the
        natural weights :math:`p^T_\Phi`, :math:`p^T_\Psi` where requested.
        """
        lam1 = terms.p_phi_t if self.lambda1 == 'p_phi_t' else self.lambda1
        per_sample = lam1 * terms.primary_kd
        if self.lambda2 != 0:
            per_sample = per_sample + self.lambda2 * terms.binary_kd
        if self.lambda3 == 'p_psi_t':
            per_sample = per_sample + terms.p_psi_t * terms.secondary_kd
        elif self.lambda3 != 0:
            per_sample = per_sample + self.lambda3 * terms.secondary_kd
        return per_sample

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
            ``k_mean``, ``k_std``, ``k_min``, ``k_max`` (primary group size)
            and ``p_phi_t`` (mean teacher primary mass).
        """
        check_logits_pair(student_logits, teacher_logits)
        temp = self.temperature
        dtype = student_logits.dtype
        if dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32
        ws = self._workspace_for(student_logits)
        with torch.no_grad():
            s = student_logits.detach().to(dtype)
            t = teacher_logits.detach().to(dtype)
            t_buf, mask, scratch = (torch.empty_like(s) if ws is None else
                                    ws.take(s) for _ in range(3))
            stats = (softmax_stats(s, temp),
                     softmax_stats(t, temp, out=t_buf))
            grouping = self._group(s, t, gt_label, stats, mask, scratch)
        by_student = self.rank_by == 'student'
        phi = grouping.phi_exp_sum
        terms = grouped_kl_terms(
            student_logits,
            teacher_logits,
            grouping.mask,
            temp,
            student_stats=stats[0],
            teacher_stats=stats[1],
            scratch=scratch,
            group_size=grouping.k,
            student_phi_exp_sum=phi if by_student else None,
            teacher_phi_exp_sum=None if by_student else phi,
            release_buffers=None if ws is None else ws.give)
        return self.summarize(terms, grouping.k, dtype)

    def summarize(self, terms: GroupedKLTerms, k: Tensor,
                  dtype: torch.dtype) -> Dict[str, Tensor]:
        """The output dict of :meth:`forward` from the KL terms and the
        group sizes ``k`` (B, ) (also feeds the regime watch)."""
        temp = self.temperature
        loss = self.eq11_per_sample(terms).mean() * (self.loss_weight * temp *
                                                      temp)
        k = k.to(dtype)
        k_mean = k.mean()
        if self.training and torch.is_grad_enabled():
            self._regime.update(k_mean, temp)
        return dict(
            loss=loss,
            primary_kd=terms.primary_kd.detach().mean(),
            binary_kd=terms.binary_kd.detach().mean(),
            secondary_kd=terms.secondary_kd.detach().mean(),
            k_mean=k_mean,
            k_std=k.std(correction=0),
            k_min=k.min(),
            k_max=k.max(),
            p_phi_t=terms.p_phi_t.detach().mean())

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, lambda1={self.lambda1!r}, '
                f'lambda2={self.lambda2}, lambda3={self.lambda3!r}, '
                f'temperature={self.temperature}, k_mode={self.k_mode!r}, '
                f'rank_by={self.rank_by!r}, fixed_k={self.fixed_k}, '
                f'force_target={self.force_target}, '
                f'loss_weight={self.loss_weight}, '
                f'reuse_buffers={self.reuse_buffers}, '
                f'selection={self.selection!r}')


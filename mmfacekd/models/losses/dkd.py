"""Decoupled knowledge distillation (Zhao et al., CVPR 2022)."""
from typing import Tuple

import torch
import torch.nn as nn
from torch import Tensor

from mmfacekd.registry import MODELS

from .utils import check_logits_pair

__all__ = ['DKDLoss', 'dkd_terms']


def dkd_terms(student_logits: Tensor, teacher_logits: Tensor, gt_label: Tensor,
              temperature: float = 4.0) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Per-sample TCKD and NCKD of `Decoupled Knowledge Distillation
    <https://arxiv.org/abs/2203.08679>`_ (eq. 1-3 of the paper), in log space.

    With :math:`t` the ground-truth class, :math:`p = \mathrm{softmax}(z/T)`,
    the binary distribution :math:`b = [p_t, 1 - p_t]` and the distribution
    over the non-target classes :math:`\hat{p}_i = p_i / (1 - p_t)`,
    :math:`i \neq t`:

    .. math::
        \mathrm{TCKD} = \mathrm{KL}(b^T \| b^S), \qquad
        \mathrm{NCKD} = \mathrm{KL}(\hat{p}^T \| \hat{p}^S)

    and the decomposition
    :math:`\mathrm{KL}(p^T \| p^S) = \mathrm{TCKD} + (1 - p^T_t)\,
    \mathrm{NCKD}` holds exactly (eq. 4 of the paper). The target class is
    removed with a :math:`-\infty` mask and every log-probability is obtained
    from ``logsumexp`` (no ``- 1000`` logit trick, no ``log`` of a
    probability), so the terms stay finite for large logits.

    Args:
        student_logits (Tensor): Student logits of shape (B, C).
        teacher_logits (Tensor): Teacher logits of shape (B, C).
        gt_label (Tensor): Ground-truth labels of shape (B, ) (or (B, 1)).
        temperature (float): The softening temperature :math:`T`.
            Defaults to 4.0.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``(tckd, nckd, p_t_teacher)``, each of
        shape (B, ), without the :math:`T^2` factor. ``p_t_teacher`` is the
        teacher's softened target probability :math:`p^T_t` (no gradient).
    """
    check_logits_pair(student_logits, teacher_logits)
    if student_logits.size(1) < 2:
        raise ValueError('DKD needs at least two classes')
    gt = gt_label.reshape(-1, 1).long()
    a = student_logits / temperature
    b = teacher_logits.detach() / temperature
    target_mask = torch.zeros_like(a, dtype=torch.bool).scatter_(1, gt, True)

    lse_a = torch.logsumexp(a, dim=1)
    lse_b = torch.logsumexp(b, dim=1)
    a_nt = a.masked_fill(target_mask, float('-inf'))
    b_nt = b.masked_fill(target_mask, float('-inf'))
    lse_a_nt = torch.logsumexp(a_nt, dim=1)
    lse_b_nt = torch.logsumexp(b_nt, dim=1)

    # TCKD: binary (target, non-target) distributions, all in log space.
    log_bs = torch.stack([a.gather(1, gt).squeeze(1) - lse_a,
                          lse_a_nt - lse_a], dim=1)
    log_bt = torch.stack([b.gather(1, gt).squeeze(1) - lse_b,
                          lse_b_nt - lse_b], dim=1)
    tckd = (log_bt.exp() * (log_bt - log_bs)).sum(dim=1)

    # NCKD: distributions over the non-target classes. The target entry is
    # -inf in both; it is set to 0 in both so that it contributes
    # exp(0) * (0 - 0) = 0 instead of 0 * (inf - inf).
    log_ps_nt = (a_nt - lse_a_nt.unsqueeze(1)).masked_fill(target_mask, 0.)
    log_pt_nt = (b_nt - lse_b_nt.unsqueeze(1)).masked_fill(target_mask, 0.)
    nckd = (log_pt_nt.exp() * (log_pt_nt - log_ps_nt)).sum(dim=1)
    p_t_teacher = log_bt[:, 0].exp()
    return tckd, nckd, p_t_teacher


@MODELS.register_module()
class DKDLoss(nn.Module):
    r"""Decoupled Knowledge Distillation of `Decoupled Knowledge Distillation
    <https://arxiv.org/abs/2203.08679>`_ (Zhao et al., CVPR 2022).

    .. math::
        \mathcal{L}_{DKD} = T^2 \cdot \frac{1}{B} \sum_{b=1}^{B}
        \left( \alpha \, \mathrm{TCKD}_b + \beta \, \mathrm{NCKD}_b \right)

    where TCKD is the KL divergence between the teacher's and the student's
    binary (target, non-target) distributions and NCKD the KL divergence
    between their distributions over the non-target classes, all at
    temperature :math:`T` (see :func:`dkd_terms`). The target class is masked
    out in log space. The teacher logits are treated as constants.

    Deviations from Zhao et al. (2022):

    * **Warm-up.** The authors scale the DKD term by
      :math:`\min(e / E_w, 1)` (epochs :math:`e` from 1, :math:`E_w = 20`
      on CIFAR-100, 1 — i.e. none — on ImageNet). The ramp is not part of
      this loss: :class:`DistillWarmupHook` with ``count_from=1`` provides
      it (``dkd_warmup`` in ``configs/_base_/losses/dkd.py``,
      ``configs/dkd/dkd_warmup_r50_mbf.py``; per iteration with
      ``by_epoch=False``). ``dkd_r50_mbf.py`` has none.
    * :math:`\alpha = 1, \beta = 8, T = 4` are the paper's CIFAR-100
      values (ImageNet: :math:`\beta = 0.5, T = 1`); no face-recognition
      values are published. The logits are the margin heads' s·cosθ
      logits, not a linear classifier's.
    * The target class is removed with a :math:`-\infty` mask in log space
      instead of the authors' code's :math:`-1000` logit offset (same
      values, finite for large logits).

    Args:
        alpha (float): Weight :math:`\alpha` of TCKD. Defaults to 1.0.
        beta (float): Weight :math:`\beta` of NCKD. Defaults to 8.0.
        temperature (float): The softening temperature :math:`T`.
            Defaults to 4.0.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 alpha: float = 1.0,
                 beta: float = 8.0,
                 temperature: float = 4.0,
                 loss_weight: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.temperature = float(temperature)
        self.loss_weight = float(loss_weight)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor,
                gt_label: Tensor) -> Tensor:
        """Compute the DKD loss.

        Args:
            student_logits (Tensor): Student logits of shape (B, C).
            teacher_logits (Tensor): Teacher logits of shape (B, C).
            gt_label (Tensor): Ground-truth labels of shape (B, ).

        Returns:
            Tensor: The scalar loss.
        """
        tckd, nckd, _ = dkd_terms(student_logits, teacher_logits, gt_label,
                                  self.temperature)
        temp2 = self.temperature * self.temperature
        loss = (self.alpha * tckd + self.beta * nckd).mean()
        return loss * (self.loss_weight * temp2)

    def extra_repr(self) -> str:
        return (f'alpha={self.alpha}, beta={self.beta}, '
                f'temperature={self.temperature}, '
                f'loss_weight={self.loss_weight}')

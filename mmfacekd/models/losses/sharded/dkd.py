"""Decoupled KD (Zhao et al., CVPR 2022) on class-sharded logits."""
import torch
from torch import Tensor

from mmfacekd.registry import MODELS

from ..dkd import DKDLoss
from .grouped_kl import sharded_grouped_kl_terms
from .inputs import check_sharded_logits

__all__ = ['ShardedDKDLoss']


@MODELS.register_module()
class ShardedDKDLoss(DKDLoss):
    r""":class:`DKDLoss` on class-sharded logits (all rows of the global
    batch, the local columns on each rank).

    DKD is GKD's decomposition (eq. 9) with the primary group
    :math:`\Phi = \{t\}` (the target): Binary-KD is TCKD and Secondary-KD
    is NCKD, so

    .. math::
        \mathcal{L} = T^2 \frac{1}{B} \sum_b \big(\alpha\,
        \mathrm{KL}(p_b^T \| p_b^S) + \beta\,
        \mathrm{KL}(\check{p}^T \| \check{p}^S)\big)_b

    computed by :func:`sharded_grouped_kl_terms`. ``gt_label`` are global
    columns (``PartialFCHead``'s ``column_label``); with sampled classes
    the distributions are over the sampled support (see
    :class:`ShardedKDLoss`).

    Args:
        alpha (float): Weight of TCKD. Defaults to 1.0.
        beta (float): Weight of NCKD. Defaults to 8.0.
        temperature (float): :math:`T`. Defaults to 4.0.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def forward(self, student_logits: Tensor, teacher_logits: Tensor,
                gt_label: Tensor) -> Tensor:
        """Compute the loss from the local columns (B, C_l) and the global
        column labels (B, )."""
        columns = check_sharded_logits('ShardedDKDLoss', student_logits,
                                       teacher_logits, gt_label,
                                       need_label=True)
        if columns.total < 2:
            raise ValueError('DKD needs at least two classes')
        cols = torch.arange(columns.offset,
                            columns.offset + student_logits.size(1),
                            device=student_logits.device)
        target = cols.unsqueeze(0) == gt_label.reshape(-1, 1).long()
        terms = sharded_grouped_kl_terms(student_logits, teacher_logits,
                                         target, self.temperature)
        temp2 = self.temperature * self.temperature
        loss = (self.alpha * terms.binary_kd +
                self.beta * terms.secondary_kd).mean()
        return loss * (self.loss_weight * temp2)

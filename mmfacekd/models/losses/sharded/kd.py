"""Vanilla logit KD (Hinton et al., 2015) on class-sharded logits."""
from torch import Tensor

from mmfacekd.registry import MODELS

from ..kd import KDLoss
from .grouped_kl import sharded_grouped_kl_terms
from .inputs import check_sharded_logits

__all__ = ['ShardedKDLoss']


@MODELS.register_module()
class ShardedKDLoss(KDLoss):
    r""":class:`KDLoss` when every rank holds all ``B`` rows of the global
    batch and its own columns (classes) of both logits, e.g. from
    :class:`~mmfacekd.models.heads.PartialFCHead` and a sharded teacher
    head.

    The loss is :math:`\frac{T^2}{B} \sum_b \mathrm{KL}(p^T_b \| p^S_b)`
    over the columns of all ranks: GKD's eq. 9 with :math:`\Phi = U`
    (:func:`sharded_grouped_kl_terms`), so the softmax statistics are
    reduced across ranks. Every rank returns the same loss; the gradient of
    each rank's columns is the single-process one.

    With sampled classes (``PartialFCHead(sample_rate<1)``) both softmaxes
    are over the same sampled support (the union of the ranks' kept
    columns): the teacher's distribution is its softmax restricted to and
    renormalised on that support, and the loss is the KL between the two
    renormalised distributions.

    Args:
        temperature (float): :math:`T`. Defaults to 4.0.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def forward(self, student_logits: Tensor,
                teacher_logits: Tensor) -> Tensor:
        """Compute the loss from the local columns (B, C_l) of both."""
        check_sharded_logits('ShardedKDLoss', student_logits, teacher_logits)
        terms = sharded_grouped_kl_terms(student_logits, teacher_logits,
                                         None, self.temperature)
        temp2 = self.temperature * self.temperature
        return terms.primary_kd.mean() * (self.loss_weight * temp2)

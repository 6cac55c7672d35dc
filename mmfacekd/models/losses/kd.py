"""Logit knowledge distillation (Hinton et al., 2015)."""
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS

from .utils import check_logits_pair

__all__ = ['KDLoss']


@MODELS.register_module()
class KDLoss(nn.Module):
    r"""Vanilla logit distillation of `Distilling the Knowledge in a Neural
    Network <https://arxiv.org/abs/1503.02531>`_.

    With :math:`p^T = \mathrm{softmax}(z^T / T)` and
    :math:`p^S = \mathrm{softmax}(z^S / T)`:

    .. math::
        \mathcal{L}_{KD} = \frac{T^2}{B} \sum_{b=1}^{B} \sum_{c=1}^{C}
        p^T_{b,c} \left( \log p^T_{b,c} - \log p^S_{b,c} \right)

    i.e. :math:`\mathrm{KL}(p^T \| p^S)` summed over the classes and averaged
    over the batch (``batchmean``), multiplied by :math:`T^2` to keep the
    gradient scale independent of the temperature. Both distributions are
    handled in log space (``log_softmax``), so the loss is finite for large
    (e.g. :math:`s=64` cosine) logits. The teacher logits are treated as
    constants (detached).

    Deviations from Hinton et al. (2015): none in the term. The paper's
    soft-target cross-entropy and this KL differ by the teacher's entropy,
    a constant (same gradients); its :math:`T^2` scaling is applied; the
    hard-target loss it adds is the distiller's student loss
    (``student_loss_weight``). The logits are those of a margin head
    (:math:`s \cos\theta`, or margin logits), not of a plain linear
    classifier — a face-recognition usage, not part of the paper.

    Args:
        temperature (float): The softening temperature :math:`T`.
            Defaults to 4.0.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self, temperature: float = 4.0, loss_weight: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        self.temperature = float(temperature)
        self.loss_weight = float(loss_weight)

    def forward(self, student_logits: Tensor,
                teacher_logits: Tensor) -> Tensor:
        """Compute the KD loss.

        Args:
            student_logits (Tensor): Student logits of shape (B, C).
            teacher_logits (Tensor): Teacher logits of shape (B, C).

        Returns:
            Tensor: The scalar loss.
        """
        check_logits_pair(student_logits, teacher_logits)
        temp = self.temperature
        teacher_logits = teacher_logits.detach()
        if temp != 1.0:
            student_logits = student_logits / temp
            teacher_logits = teacher_logits / temp
        log_p_s = F.log_softmax(student_logits, dim=1)
        log_p_t = F.log_softmax(teacher_logits, dim=1)
        kl = F.kl_div(log_p_s, log_p_t, reduction='sum', log_target=True)
        return kl * (self.loss_weight * temp * temp / student_logits.size(0))

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, '
                f'loss_weight={self.loss_weight}')

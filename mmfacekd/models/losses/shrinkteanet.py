"""Angular distillation of ShrinkTeaNet (Duong et al., 2019)."""
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS

__all__ = ['ShrinkTeaNetLoss']


@MODELS.register_module()
class ShrinkTeaNetLoss(nn.Module):
    r"""Angular distillation loss of `ShrinkTeaNet: Million-scale
    Lightweight Face Recognition via Shrinking Teacher-Student Networks
    <https://arxiv.org/abs/1905.10620>`_ (Duong et al., arXiv 2019).

    Only the direction of the teacher's feature is transferred, not its
    norm:

    .. math::
        \mathcal{L}_{AD} = \frac{w}{B} \sum_{b=1}^{B}
        \Big( 1 - \frac{\langle f^S_b, f^T_b \rangle}
        {\|f^S_b\|_2 \, \|f^T_b\|_2} \Big)

    with :math:`f_b` the flattened feature of sample :math:`b`.

    Deviations from Duong et al. (2019):

    * Final embeddings only by default; the paper also distils the
      intermediate stages (feed ``recorder.``/``connector.`` inputs, one
      loss per stage, for those).
    * The form is the unsquared cosine distance averaged over the batch,
      weight 1, as the face-recognition reimplementations
      (MarginDistillation authors' "angular distillation", EKD authors'
      baselines) use it; the paper's exact equation and weight were not
      re-checked here.
    * The teacher side is detached.

    Args:
        loss_weight (float): Weight :math:`w`. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
        """Compute the angular distillation loss.

        Args:
            student_feat (Tensor): (B, ...) student features.
            teacher_feat (Tensor): Teacher features, same number of elements
                per sample.

        Returns:
            Tensor: The scalar loss.
        """
        s = student_feat.flatten(1)
        t = teacher_feat.detach().flatten(1).to(s.dtype)
        if s.shape != t.shape:
            raise ValueError(
                'ShrinkTeaNetLoss: student and teacher features differ in '
                f'shape, {tuple(student_feat.shape)} vs '
                f'{tuple(teacher_feat.shape)}; project the student first')
        cos = (F.normalize(s, dim=1) * F.normalize(t, dim=1)).sum(dim=1)
        return self.loss_weight * (1.0 - cos).mean()

    def extra_repr(self) -> str:
        return f'loss_weight={self.loss_weight}'

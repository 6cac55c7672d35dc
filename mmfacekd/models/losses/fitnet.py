"""FitNet hint loss (Romero et al., ICLR 2015)."""
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS

__all__ = ['FitNetLoss']


@MODELS.register_module()
class FitNetLoss(nn.Module):
    r"""Hint loss of `FitNets: Hints for Thin Deep Nets
    <https://arxiv.org/abs/1412.6550>`_ (Romero et al., ICLR 2015).

    The student's hint (its embedding, or an intermediate feature map brought
    to the teacher's width by a trainable regressor :math:`r`, e.g. a
    :class:`ProjectionConnector` with ``spatial=True`` — a 1x1 conv) is
    regressed onto the teacher's guided feature. With :math:`u_b` the
    flattened student hint and :math:`v_b` the flattened teacher feature of
    sample :math:`b` (each optionally L2-normalized, :math:`\hat{x} =
    x / \|x\|_2`, over the whole flattened vector of one sample):

    .. math::
        \mathcal{L}_{mean} = \frac{w}{B N} \sum_{b=1}^{B} \|u_b - v_b\|_2^2,
        \qquad
        \mathcal{L}_{batchmean} = \frac{w}{B} \sum_{b=1}^{B}
        \|u_b - v_b\|_2^2

    with :math:`N` the number of elements of one sample's feature. The
    paper's :math:`\frac{1}{2}\|u - r(v)\|^2` corresponds to
    ``reduction='batchmean'`` (the :math:`\frac{1}{2}` folded into
    :math:`w`).

    Choices (the paper trains hints in a separate stage; face-recognition
    baselines add the hint to the margin-softmax loss):

    * Defaults follow the face-recognition usage of the EKD authors'
      baselines (TFace, CVPR 2022): ``MSELoss`` (element mean) between the raw
      student and teacher embeddings, weight 1, added to the margin softmax.
    * ``normalize=True`` compares directions only (with ``'batchmean'`` the
      loss is :math:`2 - 2\cos(u_b, v_b)` averaged over the batch).
    * Student and teacher shapes must agree; put a connector on the student
      for another width, use :class:`FeatureMSELoss` for maps of another
      spatial size. The teacher side is detached.

    Args:
        normalize (bool): L2-normalize each sample's flattened student and
            teacher features first. Defaults to False.
        reduction (str): ``'mean'`` (over all elements, as ``MSELoss``) or
            ``'batchmean'`` (sum over the feature, mean over the batch).
            Defaults to 'mean'.
        loss_weight (float): Weight :math:`w` of the loss. Defaults to 1.0.

    Example:
        >>> import torch
        >>> loss = FitNetLoss(normalize=True, reduction='batchmean')
        >>> f = torch.randn(4, 512)
        >>> float(loss(f, 2 * f))  # same directions
        0.0
    """

    def __init__(self, normalize: bool = False, reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if reduction not in ('mean', 'batchmean'):
            raise ValueError("reduction must be 'mean' or 'batchmean', got "
                             f'{reduction!r}')
        self.normalize = bool(normalize)
        self.reduction = reduction
        self.loss_weight = float(loss_weight)

    def forward(self, student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
        """Compute the hint loss.

        Args:
            student_feat (Tensor): (B, ...) student hint, e.g. (B, D)
                embeddings or (B, C, H, W) maps after a connector.
            teacher_feat (Tensor): Teacher feature of the same shape.

        Returns:
            Tensor: The scalar loss.
        """
        if student_feat.shape != teacher_feat.shape \
                or student_feat.dim() < 2:
            raise ValueError(
                'FitNetLoss: student and teacher features must have the same '
                f'(B, ...) shape, got {tuple(student_feat.shape)} and '
                f'{tuple(teacher_feat.shape)}; project the student with a '
                'connector (ProjectionConnector, spatial=True for maps)')
        s = student_feat.flatten(1)
        t = teacher_feat.detach().flatten(1).to(s.dtype)
        if self.normalize:
            s = F.normalize(s, dim=1)
            t = F.normalize(t, dim=1)
        sq = (s - t).pow(2)
        if self.reduction == 'mean':
            loss = sq.mean()
        else:
            loss = sq.sum() / s.size(0)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'normalize={self.normalize}, reduction={self.reduction!r}, '
                f'loss_weight={self.loss_weight}')

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

    The student's guided feature (its embedding, or an intermediate feature
    map brought to the teacher's width by a trainable regressor :math:`r`)
    is regressed onto the teacher's hint. With :math:`s_b` the flattened
    student feature (after :math:`r`) and :math:`t_b` the flattened teacher
    hint of sample :math:`b` (each optionally L2-normalized over the whole
    flattened vector of one sample):

    .. math::
        \mathcal{L}_{mean} = \frac{w}{B N} \sum_{b=1}^{B} \|s_b - t_b\|_2^2,
        \qquad
        \mathcal{L}_{batchmean} = \frac{w}{B} \sum_{b=1}^{B}
        \|s_b - t_b\|_2^2

    with :math:`N` the number of elements of one sample's feature. The
    paper's eq. 3, :math:`\frac{1}{2}\|u_h - r(v_g)\|^2` (:math:`u_h` the
    teacher's hint, :math:`v_g` the student's guided layer), is
    ``reduction='batchmean', loss_weight=0.5``.

    Two uses (configs in ``configs/fitnet/``):

    * **Embedding hint** (``fitnet_r50_mbf.py``, the face-recognition
      baselines): ``MSELoss`` (element mean) between the raw 512-d student
      and teacher embeddings, weight 1, added to the margin softmax — the
      EKD authors' TFace baseline. The GKD authors' public FitNet
      (WisonZ/GKD ``distillation/fitnet.py``) compares L2-normalized
      embeddings with the squared error summed and divided by
      :math:`2B`: ``normalize=True, reduction='batchmean',
      loss_weight=0.5`` (``fitnet_gkd_r50_mbf.py``).
    * **Intermediate hint** (``fitnet_hint_r50_mbf.py``, the paper's): the
      output of a middle student stage (the guided layer, MobileFaceNet
      ``backbone.layers.3``, 128x28x28) is recorded, mapped by a trainable
      convolutional regressor :math:`r` (a ``connectors`` entry, a
      :class:`ProjectionConnector` with ``spatial=True``) and regressed onto
      the recorded middle teacher stage (the hint, IResNet
      ``backbone.layer2``, 128x28x28); see ``fitnet_hint_*`` in
      ``configs/_base_/losses/fitnet.py``. The regressor is a distiller
      connector, so it is trained by the optimizer with the student.

    Deviations from Romero et al. (2015):

    * **One stage.** The paper first trains the student up to the guided
      layer on the hint loss alone (stage 1), then the whole student with
      KD (stage 2). Here the hint is added to the margin-softmax loss and
      everything trains jointly from the start, as in the face baselines
      (a stage-1 run would need ``student_loss_weight=0`` and
      ``find_unused_parameters=True``; not provided).
    * **Regressor.** The paper's convolutional regressor has the kernel
      :math:`N_g - N_h + 1` that maps the guided layer's spatial size onto
      the hint's; both stages are 28x28 here, so that kernel is 1x1 — the
      1x1 conv of :class:`ProjectionConnector`. It is linear (no ReLU): the
      paper gives :math:`r` the hint layer's non-linearity, and an IResNet
      stage output (a residual sum) has none. Maps of different spatial
      sizes are an error (no larger kernels).
    * **Scale.** The hint config uses the element mean (``'mean'``,
      weight 1) instead of eq. 3's half sum: summed over a 128x28x28 map the
      term is ~1e5 times larger and would swamp the margin softmax in joint
      training. The weight is a project choice, not tuned.
    * ``normalize=True`` compares directions only (with ``'batchmean'`` the
      loss is :math:`2 - 2\cos(s_b, t_b)` averaged over the batch); not in
      the paper.
    * Student and teacher shapes must agree (put a connector on the
      student); use :class:`FeatureMSELoss` for maps of another spatial
      size. The teacher side is detached.

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

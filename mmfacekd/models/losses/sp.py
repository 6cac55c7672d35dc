"""Similarity-preserving knowledge distillation (Tung & Mori, ICCV 2019)."""
from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS

from .utils import BatchLoss, prepare_embedding_pair

__all__ = ['SPLoss', 'sp_similarity']


def sp_similarity(x: Tensor, normalize_features: bool = False,
                  normalize_rows: bool = True) -> Tensor:
    """(B, B) similarity matrix of SP from (B, ...) features.

    ``G = A Aᵀ`` of the flattened features ``A`` (rows L2-normalized first
    with ``normalize_features``), then each row of ``G`` L2-normalized with
    ``normalize_rows`` (the paper's :math:`\\tilde{G}`)."""
    a = x.flatten(1)
    if normalize_features:
        a = F.normalize(a, dim=1)
    g = a @ a.t()
    if normalize_rows:
        g = F.normalize(g, dim=1)
    return g


@MODELS.register_module()
class SPLoss(BatchLoss):
    r"""Similarity-preserving distillation of `Similarity-Preserving
    Knowledge Distillation <https://arxiv.org/abs/1907.09682>`_ (Tung & Mori,
    ICCV 2019).

    With :math:`A \in \mathbb{R}^{B \times N}` the flattened features of the
    (global) batch, :math:`G = A A^\top` and :math:`\tilde{G}` its
    row-wise L2-normalized version
    (:math:`\tilde{G}_{i\cdot} = G_{i\cdot} / \|G_{i\cdot}\|_2`):

    .. math::
        \mathcal{L}_{SP} = \frac{\gamma}{B^2}
        \big\| \tilde{G}^S - \tilde{G}^T \big\|_F^2

    Choices:

    * Defaults are the paper's (:math:`\tilde{G}` of the raw features,
      :math:`\gamma = 3000`, the paper's CIFAR value; no face-specific value
      is published). The face-recognition baselines of the EKD authors
      (TFace) use the cosine-similarity matrix instead — features
      L2-normalized, rows not normalized, :math:`\gamma = 1`:
      ``normalize_features=True, normalize_rows=False, loss_weight=1``.
    * With row normalization the loss scales as :math:`1/B`, so on the
      gathered global batch (``gather=True``) it is smaller than on one
      rank's batch by about the number of ranks.
    * ``gather=True``: student features all-gathered with gradient, the
      teacher's without; the loss is the single-process loss of the
      concatenated batch. The teacher side is detached.

    Args:
        normalize_features (bool): L2-normalize the flattened features
            before the Gram matrix. Defaults to False.
        normalize_rows (bool): L2-normalize the rows of the Gram matrix.
            Defaults to True.
        gather (bool): Compute the loss on the batch gathered over all ranks.
            Defaults to True.
        loss_weight (float): :math:`\gamma`. Defaults to 3000.0.
    """

    def __init__(self,
                 normalize_features: bool = False,
                 normalize_rows: bool = True,
                 gather: bool = True,
                 loss_weight: float = 3000.0) -> None:
        super().__init__(gather=gather, loss_weight=loss_weight)
        self.normalize_features = bool(normalize_features)
        self.normalize_rows = bool(normalize_rows)

    def forward(self, student_feat: Tensor,
                teacher_feat: Tensor) -> Dict[str, Tensor]:
        r"""Compute the SP loss.

        Args:
            student_feat (Tensor): (B, ...) student features.
            teacher_feat (Tensor): (B, ...) teacher features (any width).

        Returns:
            dict: ``loss`` and ``sq_diff`` (the unweighted
            :math:`\|\tilde{G}^S - \tilde{G}^T\|_F^2 / B^2`).
        """
        fs, ft = prepare_embedding_pair(student_feat, teacher_feat,
                                        gather=self.gather)
        gs = sp_similarity(fs, self.normalize_features, self.normalize_rows)
        with torch.no_grad():
            gt = sp_similarity(ft, self.normalize_features,
                               self.normalize_rows)
        n = fs.size(0)
        value = (gs - gt).pow(2).sum() / (n * n)
        return dict(loss=self.loss_weight * value, sq_diff=value.detach())

    def extra_repr(self) -> str:
        return (f'normalize_features={self.normalize_features}, '
                f'normalize_rows={self.normalize_rows}, '
                f'gather={self.gather}, loss_weight={self.loss_weight}')

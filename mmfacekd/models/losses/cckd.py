"""Correlation congruence knowledge distillation (Peng et al., ICCV 2019)."""
import math
from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS

from .utils import BatchLoss, prepare_embedding_pair

__all__ = ['CCKDLoss', 'taylor_rbf_correlation']


def taylor_rbf_correlation(x: Tensor, gamma: float = 0.4,
                           order: int = 2) -> Tensor:
    r"""(B, B) correlation matrix of CCKD: the Gaussian RBF kernel of the
    L2-normalized rows of ``x`` by its Taylor expansion.

    For unit vectors :math:`\|F_i - F_j\|^2 = 2 - 2 F_i^\top F_j`, hence

    .. math::
        k(F_i, F_j) = e^{-\gamma \|F_i - F_j\|^2}
        \approx \sum_{p=0}^{P} e^{-2\gamma} \frac{(2\gamma)^p}{p!}
        (F_i^\top F_j)^p
    """
    f = F.normalize(x.flatten(1), dim=1)
    sim = f @ f.t()
    corr = torch.zeros_like(sim)
    for p in range(order + 1):
        coef = math.exp(-2 * gamma) * (2 * gamma)**p / math.factorial(p)
        corr = corr + coef * sim.pow(p)
    return corr


@MODELS.register_module()
class CCKDLoss(BatchLoss):
    r"""Correlation congruence of `Correlation Congruence for Knowledge
    Distillation <https://arxiv.org/abs/1904.01802>`_ (Peng et al.,
    ICCV 2019).

    With :math:`\psi(F) = [k(F_i, F_j)]_{i,j} \in \mathbb{R}^{B \times B}`
    the correlation matrix of the (global) batch under the Taylor-expanded
    Gaussian RBF kernel of :func:`taylor_rbf_correlation` (order :math:`P`,
    :math:`\gamma`, on L2-normalized embeddings):

    .. math::
        \mathcal{L}_{CC} = \frac{w}{B^2}
        \big\| \psi(F^T) - \psi(F^S) \big\|_F^2

    i.e. the MSE over the :math:`B^2` entries (the diagonal entries are equal
    for both networks and contribute 0).

    Choices: the Gaussian RBF kernel with :math:`\gamma = 0.4`,
    :math:`P = 2`, as the face-recognition baselines of the EKD authors
    (TFace) use; the paper's instance-level KD term is not part of this loss
    (add :class:`KDLoss` separately for it); weight 1 as in those baselines.
    ``gather=True`` computes the correlations on the batch gathered over
    all ranks (student with gradient); the teacher side is detached.

    Args:
        gamma (float): Kernel parameter :math:`\gamma`. Defaults to 0.4.
        order (int): Taylor order :math:`P`. Defaults to 2.
        gather (bool): Compute the loss on the batch gathered over all ranks.
            Defaults to True.
        loss_weight (float): Weight :math:`w`. Defaults to 1.0.
    """

    def __init__(self, gamma: float = 0.4, order: int = 2,
                 gather: bool = True, loss_weight: float = 1.0) -> None:
        super().__init__(gather=gather, loss_weight=loss_weight)
        if gamma <= 0:
            raise ValueError(f'gamma must be > 0, got {gamma}')
        if order < 0:
            raise ValueError(f'order must be >= 0, got {order}')
        self.gamma = float(gamma)
        self.order = int(order)

    def forward(self, student_embedding: Tensor,
                teacher_embedding: Tensor) -> Dict[str, Tensor]:
        """Compute the CCKD loss.

        Args:
            student_embedding (Tensor): (B, ...) student features, flattened
                per sample (the kernel L2-normalizes them).
            teacher_embedding (Tensor): (B, ...) teacher features (any
                width).

        Returns:
            dict: ``loss`` and ``mse`` (unweighted).
        """
        fs, ft = prepare_embedding_pair(student_embedding, teacher_embedding,
                                        gather=self.gather)
        cs = taylor_rbf_correlation(fs, self.gamma, self.order)
        with torch.no_grad():
            ct = taylor_rbf_correlation(ft, self.gamma, self.order)
        mse = F.mse_loss(cs, ct)
        return dict(loss=self.loss_weight * mse, mse=mse.detach())

    def extra_repr(self) -> str:
        return (f'gamma={self.gamma}, order={self.order}, '
                f'gather={self.gather}, loss_weight={self.loss_weight}')

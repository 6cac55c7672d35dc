"""Correlation congruence knowledge distillation (Peng et al., ICCV 2019)."""
import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS

from .kd import KDLoss
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
    ICCV 2019), optionally with the paper's instance-level KD term.

    With :math:`\psi(F) = [k(F_i, F_j)]_{i,j} \in \mathbb{R}^{B \times B}`
    the correlation matrix of the (global) batch under the Taylor-expanded
    Gaussian RBF kernel of :func:`taylor_rbf_correlation` (order :math:`P`,
    :math:`\gamma`, on L2-normalized embeddings) and, on the logits
    :math:`z`, the instance congruence of Hinton KD at temperature
    :math:`T` (:class:`KDLoss`: :math:`T^2 \cdot
    \mathrm{KL}(p^T_\tau \| p^S_\tau)`, batch mean):

    .. math::
        \mathcal{L}_{CC} = \frac{1}{B^2}
        \big\| \psi(F^T) - \psi(F^S) \big\|_F^2, \qquad
        \mathcal{L} = \beta\, \mathcal{L}_{CC}
        + \lambda_{KD}\, \mathcal{L}_{KD}(z^S, z^T)

    (:math:`\mathcal{L}_{CC}` is the MSE over the :math:`B^2` entries; the
    diagonal entries are equal for both networks and contribute 0). The
    paper's total loss combines cross-entropy, instance KD and correlation
    congruence, :math:`\alpha \mathcal{L}_{CE} + (1 - \alpha)
    \mathcal{L}_{KD} + \beta \mathcal{L}_{CC}` (this form is recalled, the
    paper text was not available here to re-check it): :math:`\alpha` is
    the distiller's ``student_loss_weight`` (the margin softmax here),
    :math:`1 - \alpha` is ``kd_weight`` and :math:`\beta` ``loss_weight``;
    any weighting of the three is expressible.

    Deviations from Peng et al. (2019):

    * **Instance term off by default** (``kd_weight=0``): the
      face-recognition CC baseline of the EKD authors (TFace ``cc.py``)
      computes the correlation term alone, weight 1, on the embeddings;
      ``configs/cckd/cckd_r50_mbf.py`` is that. ``cckd_kd_r50_mbf.py`` adds
      the instance term. The weights the paper uses in its experiments are
      not in the material available here; that config uses
      ``student_loss_weight = kd_weight = loss_weight = 1`` (the weights of
      this project's KD and CCKD baselines), not the paper's convex
      :math:`\alpha, 1 - \alpha` pair.
    * The correlation uses the final (L2-normalized) embeddings and the
      kernel of the face baselines (Gaussian RBF, :math:`\gamma = 0.4`,
      :math:`P = 2`); the instance term reads the head's s·cosθ logits.
    * ``gather=True`` computes the correlations on the batch gathered over
      all ranks (student with gradient; the paper uses one batch); the
      instance term is per sample and stays per rank. The teacher side is
      detached.

    Args:
        gamma (float): Kernel parameter :math:`\gamma`. Defaults to 0.4.
        order (int): Taylor order :math:`P`. Defaults to 2.
        gather (bool): Compute the correlations on the batch gathered over
            all ranks. Defaults to True.
        loss_weight (float): Weight :math:`\beta` of the correlation term.
            Defaults to 1.0.
        kd_weight (float): Weight :math:`\lambda_{KD}` (the paper's
            :math:`1 - \alpha`) of the instance KD term; > 0 needs the
            ``student_logits``/``teacher_logits`` inputs. Defaults to 0.0.
        temperature (float): :math:`T` of the instance term. Defaults to 4.0.
    """

    def __init__(self, gamma: float = 0.4, order: int = 2,
                 gather: bool = True, loss_weight: float = 1.0,
                 kd_weight: float = 0.0, temperature: float = 4.0) -> None:
        super().__init__(gather=gather, loss_weight=loss_weight)
        if gamma <= 0:
            raise ValueError(f'gamma must be > 0, got {gamma}')
        if order < 0:
            raise ValueError(f'order must be >= 0, got {order}')
        if kd_weight < 0:
            raise ValueError(f'kd_weight must be >= 0, got {kd_weight}')
        self.gamma = float(gamma)
        self.order = int(order)
        self.kd_weight = float(kd_weight)
        self.instance_kd = KDLoss(temperature=temperature)

    def forward(self, student_embedding: Tensor, teacher_embedding: Tensor,
                student_logits: Optional[Tensor] = None,
                teacher_logits: Optional[Tensor] = None
                ) -> Dict[str, Tensor]:
        r"""Compute the CCKD loss.

        Args:
            student_embedding (Tensor): (B, ...) student features, flattened
                per sample (the kernel L2-normalizes them).
            teacher_embedding (Tensor): (B, ...) teacher features (any
                width).
            student_logits (Tensor, optional): (B, C) student logits, for
                ``kd_weight > 0``.
            teacher_logits (Tensor, optional): (B, C) teacher logits, for
                ``kd_weight > 0``.

        Returns:
            dict: ``loss``, ``mse`` (unweighted :math:`\mathcal{L}_{CC}`)
            and, with ``kd_weight > 0``, ``kd`` (unweighted
            :math:`\mathcal{L}_{KD}`).
        """
        fs, ft = prepare_embedding_pair(student_embedding, teacher_embedding,
                                        gather=self.gather)
        cs = taylor_rbf_correlation(fs, self.gamma, self.order)
        with torch.no_grad():
            ct = taylor_rbf_correlation(ft, self.gamma, self.order)
        mse = F.mse_loss(cs, ct)
        out = dict(loss=self.loss_weight * mse, mse=mse.detach())
        if self.kd_weight > 0:
            if student_logits is None or teacher_logits is None:
                raise ValueError(
                    'CCKDLoss(kd_weight>0) needs the instance-KD inputs: add '
                    "student_logits='student.logits' and teacher_logits="
                    "'teacher.logits' to the loss's `inputs`, or set "
                    'kd_weight=0')
            kd = self.instance_kd(student_logits, teacher_logits)
            out['loss'] = out['loss'] + self.kd_weight * kd
            out['kd'] = kd.detach()
        return out

    def extra_repr(self) -> str:
        return (f'gamma={self.gamma}, order={self.order}, '
                f'gather={self.gather}, loss_weight={self.loss_weight}, '
                f'kd_weight={self.kd_weight}')

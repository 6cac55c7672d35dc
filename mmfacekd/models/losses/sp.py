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
    with ``normalize_features``: the cosine matrix of the face baselines),
    then each row of ``G`` L2-normalized with ``normalize_rows`` (the
    paper's :math:`\\tilde{G}`)."""
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
    (global) batch and :math:`G` their (B, B) similarity matrix
    (:func:`sp_similarity`):

    .. math::
        \mathcal{L}_{SP} = \frac{\gamma}{B^2}
        \big\| G^S - G^T \big\|_F^2

    Two forms of :math:`G`:

    * **Face-recognition form (default):** :math:`G = \hat{A}\hat{A}^\top`,
      the cosine-similarity matrix of the L2-normalized embeddings
      (:math:`\hat{A}_{i\cdot} = A_{i\cdot} / \|A_{i\cdot}\|_2`), rows not
      normalized, :math:`\gamma = 1`: ``normalize_features=True,
      normalize_rows=False, loss_weight=1`` — the SP baseline of the EKD
      authors (TFace ``similarity_perserving.py``, "different from the
      origin paper, here use the embedding feature"), and the form
      docs/PAPERS.md §4 lists for the face-recognition wiring.
    * **Paper (CIFAR) form:** :math:`\tilde{G}` of the raw features,
      :math:`G = A A^\top` with every row L2-normalized
      (:math:`\tilde{G}_{i\cdot} = G_{i\cdot} / \|G_{i\cdot}\|_2`),
      :math:`\gamma = 3000` (the paper's CIFAR value):
      ``normalize_features=False, normalize_rows=True, loss_weight=3000``
      (``configs/sp/sp_gram_r50_mbf.py``).

    **Which one reproduces GKD Table 5 cannot be determined here:** the GKD
    paper (as summarized in docs/PAPERS.md) does not give its SP form, and
    the GKD authors' public code (WisonZ/GKD) has no SP implementation. The
    face-recognition form is the default because it is the one public
    face-recognition SP baseline (EKD's, whose table GKD compares with).

    Deviations from Tung & Mori (2019):

    * **Features.** The paper matches the activation maps of the last
      layer of each network's stage groups (summed over the chosen layer
      pairs); here the final embeddings (any ``(B, ...)`` input works, e.g.
      a ``recorder.`` map for the paper's choice).
    * **Face form** (default): cosine similarities of normalized embeddings
      instead of the row-normalized Gram matrix, :math:`\gamma = 1`; see
      above. The paper form is exact up to the feature choice.
    * With row normalization the loss scales as :math:`1/B`, so on the
      gathered global batch (``gather=True``) it is smaller than on one
      rank's batch by about the number of ranks.
    * ``gather=True``: student features all-gathered with gradient, the
      teacher's without; the loss is the single-process loss of the
      concatenated batch (the paper uses one batch). The teacher side is
      detached.

    Args:
        normalize_features (bool): L2-normalize the flattened features
            before the Gram matrix. Defaults to True.
        normalize_rows (bool): L2-normalize the rows of the Gram matrix.
            Defaults to False.
        gather (bool): Compute the loss on the batch gathered over all ranks.
            Defaults to True.
        loss_weight (float): :math:`\gamma`. Defaults to 1.0.
    """

    def __init__(self,
                 normalize_features: bool = True,
                 normalize_rows: bool = False,
                 gather: bool = True,
                 loss_weight: float = 1.0) -> None:
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
            :math:`\|G^S - G^T\|_F^2 / B^2`).
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

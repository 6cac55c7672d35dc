"""DarkRank: cross-sample similarity transfer (Chen et al., AAAI 2018)."""
from typing import Dict

import torch
from torch import Tensor

from mmfacekd.registry import MODELS

from .rkd import pairwise_distances
from .utils import BatchLoss, prepare_embedding_pair

__all__ = ['DarkRankLoss']


@MODELS.register_module()
class DarkRankLoss(BatchLoss):
    r"""Hard list-wise rank transfer of `DarkRank: Accelerating Deep Metric
    Learning via Cross Sample Similarities Transfer
    <https://arxiv.org/abs/1707.01220>`_ (Chen, Wang & Zhang, AAAI 2018).

    Every sample :math:`q` of the (global) batch is a query and the other
    samples are its candidates. The similarity score of a candidate
    :math:`i` is

    .. math::
        S(q, i) = -\alpha \, \|x_q - x_i\|_2^{\beta}

    computed from the student's (:math:`S^S`) and the teacher's
    (:math:`S^T`) embeddings. The *hard* variant transfers the teacher's
    ranking: let :math:`\pi_q = (\pi_1, \dots, \pi_L)` be the teacher's
    :math:`L` nearest candidates of :math:`q` (the query itself excluded), in
    descending :math:`S^T`. The loss is the negative log-likelihood of this
    permutation under the student's scores with the Plackett-Luce model
    (ListMLE):

    .. math::
        \mathcal{L}_{DR} = -\frac{w}{B} \sum_{q=1}^{B} \sum_{l=1}^{L}
        \Big( S^S(q, \pi_l) - \log \sum_{m=l}^{L} \exp S^S(q, \pi_m) \Big)

    Deviations from Chen et al. (2018):

    * Only the *hard* rank transfer; the paper's *soft* variant (KL over
      the probabilities of all permutations) is not implemented.
    * Settings of the face-recognition baselines (EKD authors, TFace):
      :math:`\alpha = 3`, :math:`\beta = 3`, list length :math:`L = 3`,
      L2-normalized embeddings (``normalize=True``), weight 1.
    * The list is truncated to the teacher's :math:`L` nearest neighbours
      and the normalizers :math:`\sum_{m \ge l}` run over this list only
      (the paper's formula ranks the whole candidate list; the usual
      implementations, the face baselines among them, truncate it so), i.e.
      the student must order the teacher's top-:math:`L` neighbours as the
      teacher does; it is not asked to rank them above the other
      candidates.
    * Teacher ties are broken by ``torch.topk``; the student's scores of
      the selected candidates carry the gradient. With ``gather=True`` the
      ranking uses the batch gathered over all ranks (student with
      gradient). The teacher side is detached. With fewer than
      :math:`L + 1` samples the list has :math:`B - 1` entries.

    Args:
        alpha (float): Score scale :math:`\alpha`. Defaults to 3.0.
        beta (float): Distance exponent :math:`\beta`. Defaults to 3.0.
        list_length (int): :math:`L`. Defaults to 3.
        normalize (bool): L2-normalize the embeddings first.
            Defaults to True.
        gather (bool): Rank within the batch gathered over all ranks.
            Defaults to True.
        loss_weight (float): Weight :math:`w`. Defaults to 1.0.
    """

    def __init__(self,
                 alpha: float = 3.0,
                 beta: float = 3.0,
                 list_length: int = 3,
                 normalize: bool = True,
                 gather: bool = True,
                 loss_weight: float = 1.0) -> None:
        super().__init__(gather=gather, loss_weight=loss_weight)
        if list_length < 1:
            raise ValueError(f'list_length must be >= 1, got {list_length}')
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.list_length = int(list_length)
        self.normalize = bool(normalize)

    def scores(self, x: Tensor) -> Tensor:
        """(B, B) scores :math:`-\\alpha d^\\beta` (diagonal included)."""
        return -self.alpha * pairwise_distances(x).pow(self.beta)

    def forward(self, student_embedding: Tensor,
                teacher_embedding: Tensor) -> Dict[str, Tensor]:
        """Compute the DarkRank loss.

        Args:
            student_embedding (Tensor): (B, ...) student embeddings.
            teacher_embedding (Tensor): (B, ...) teacher embeddings (any
                width).

        Returns:
            dict: ``loss`` and ``top1_agreement``, the fraction of queries
            whose student nearest neighbour is the teacher's.
        """
        xs, xt = prepare_embedding_pair(student_embedding, teacher_embedding,
                                        self.normalize, self.gather)
        n = xs.size(0)
        length = min(self.list_length, n - 1)
        if length < 1:
            zero = xs.sum() * 0.0
            return dict(loss=zero, top1_agreement=zero.detach())
        eye = torch.eye(n, dtype=torch.bool, device=xs.device)
        with torch.no_grad():
            st = self.scores(xt).masked_fill(eye, float('-inf'))
            order = st.topk(length, dim=1).indices  # (B, L), descending
        ss = self.scores(xs)
        ordered = ss.gather(1, order)
        # log sum_{m >= l} exp(S_m): reversed cumulative logsumexp
        tail = torch.logcumsumexp(ordered.flip(1), dim=1).flip(1)
        loss = -(ordered - tail).sum(dim=1).mean()
        with torch.no_grad():
            nn_s = ss.masked_fill(eye, float('-inf')).argmax(dim=1)
            agree = (nn_s == order[:, 0]).to(xs.dtype).mean()
        return dict(loss=self.loss_weight * loss, top1_agreement=agree)

    def extra_repr(self) -> str:
        return (f'alpha={self.alpha}, beta={self.beta}, '
                f'list_length={self.list_length}, '
                f'normalize={self.normalize}, gather={self.gather}, '
                f'loss_weight={self.loss_weight}')

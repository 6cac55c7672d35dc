"""Triplet distillation (Feng et al., 2019): a triplet loss whose margin
follows the teacher."""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS

from ..utils import gather_no_grad
from .utils import BatchLoss, prepare_embedding_pair

__all__ = ['TripletDistillationLoss', 'embedding_distances']


def embedding_distances(x: Tensor, metric: str = 'squared_l2') -> Tensor:
    """(B, B) distances between the L2-normalized rows of ``x``.

    ``'squared_l2'``: :math:`\\|\\hat{x}_i - \\hat{x}_j\\|^2 = 2 - 2\\cos`;
    ``'angle'``: :math:`\\arccos(\\cos)` (cosine clamped to
    :math:`[-1 + 10^{-7}, 1 - 10^{-7}]`)."""
    f = F.normalize(x, dim=1)
    cos = f @ f.t()
    if metric == 'squared_l2':
        return (2.0 - 2.0 * cos).clamp(min=0)
    if metric == 'angle':
        return torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    raise ValueError(f"metric must be 'squared_l2' or 'angle', got {metric!r}")


@MODELS.register_module()
class TripletDistillationLoss(BatchLoss):
    r"""Triplet loss with a teacher-adaptive margin, after `Triplet
    Distillation for Deep Face Recognition
    <https://arxiv.org/abs/1905.04457>`_ (Feng et al., arXiv 2019).

    For a triplet :math:`(a, p, n)` of the (global) batch — :math:`y_p = y_a`,
    :math:`p \neq a`, :math:`y_n \neq y_a` — with :math:`d^S, d^T` the
    student and teacher distances between L2-normalized embeddings:

    .. math::
        \Delta^T_{apn} = \max\big(d^T(a, n) - d^T(a, p),\, 0\big), \qquad
        m_{apn} = m_{min} + (m_{max} - m_{min})
            \frac{\Delta^T_{apn}}{\max_{\mathcal{T}} \Delta^T}

    .. math::
        \mathcal{L}_{TD} = \frac{w}{|\mathcal{T}|}
        \sum_{(a, p, n) \in \mathcal{T}}
        \max\big(d^S(a, p) - d^S(a, n) + m_{apn},\, 0\big)

    i.e. triplets the teacher separates well get a large margin, triplets
    the teacher finds hard a small one (:math:`m_{min} = 0.2`,
    :math:`m_{max} = 0.5`). The maximum runs over the triplet set
    :math:`\mathcal{T}` of the batch (:math:`m = m_{min}` when it is 0).

    Deviations from Feng et al. (2019) (the paper selects triplets offline,
    FaceNet-style, and fine-tunes a pre-trained student with the triplet
    loss alone; here the loss is added to the margin softmax from the
    start, with triplets from each batch):

    * The triplets come from the batch (use an identity-balanced P×K
      sampler so that it holds positives). ``mining='all'`` (default):
      :math:`\mathcal{T}` = all valid triplets, averaged including the
      inactive (zero-loss) ones. ``mining='hard'``: one triplet per anchor
      with the student's farthest positive and nearest negative
      (batch-hard); the margin uses the teacher's distances of the same
      triplet.
    * ``metric='squared_l2'`` (default, the ``L2`` variant of the
      authors' code) or ``'angle'`` (their ``cos`` variant), for both
      networks.
    * Labels ``< 0`` are ignored. A batch without a valid triplet gives 0.
    * ``gather=True``: triplets over the batch gathered from all ranks
      (student embeddings with gradient, teacher embeddings and labels
      without). The teacher side is detached.

    Args:
        m_min (float): Smallest margin. Defaults to 0.2.
        m_max (float): Largest margin. Defaults to 0.5.
        metric (str): ``'squared_l2'`` or ``'angle'``.
            Defaults to 'squared_l2'.
        mining (str): ``'all'`` or ``'hard'``. Defaults to 'all'.
        gather (bool): Form triplets over the batch gathered from all
            ranks. Defaults to True.
        loss_weight (float): Weight :math:`w`. Defaults to 1.0.
    """

    def __init__(self,
                 m_min: float = 0.2,
                 m_max: float = 0.5,
                 metric: str = 'squared_l2',
                 mining: str = 'all',
                 gather: bool = True,
                 loss_weight: float = 1.0) -> None:
        super().__init__(gather=gather, loss_weight=loss_weight)
        if metric not in ('squared_l2', 'angle'):
            raise ValueError("metric must be 'squared_l2' or 'angle', got "
                             f'{metric!r}')
        if mining not in ('all', 'hard'):
            raise ValueError(f"mining must be 'all' or 'hard', got {mining!r}")
        if m_max < m_min:
            raise ValueError(f'm_max ({m_max}) must be >= m_min ({m_min})')
        self.m_min = float(m_min)
        self.m_max = float(m_max)
        self.metric = metric
        self.mining = mining

    def _triplets(self, ds: Tensor, labels: Tensor
                  ) -> Tuple[Tensor, Tensor, Tensor]:
        """Index tensors (a, p, n) of the triplet set."""
        n = labels.numel()
        valid = labels >= 0
        same = labels.unsqueeze(1) == labels.unsqueeze(0)
        pair_ok = valid.unsqueeze(1) & valid.unsqueeze(0)
        eye = torch.eye(n, dtype=torch.bool, device=labels.device)
        pos = same & pair_ok & ~eye
        neg = ~same & pair_ok
        if self.mining == 'all':
            a, p = pos.nonzero(as_tuple=True)
            a2, nn_ = neg[a].nonzero(as_tuple=True)
            return a[a2], p[a2], nn_
        anchors = (pos.any(dim=1) & neg.any(dim=1)).nonzero(as_tuple=True)[0]
        d = ds.detach()[anchors]
        p = d.masked_fill(~pos[anchors], float('-inf')).argmax(dim=1)
        nn_ = d.masked_fill(~neg[anchors], float('inf')).argmin(dim=1)
        return anchors, p, nn_

    def forward(self, student_embedding: Tensor, teacher_embedding: Tensor,
                gt_label: Tensor) -> Dict[str, Tensor]:
        """Compute the triplet distillation loss.

        Args:
            student_embedding (Tensor): (B, D) student embeddings.
            teacher_embedding (Tensor): (B, D') teacher embeddings.
            gt_label (Tensor): (B, ) identity labels.

        Returns:
            dict: ``loss`` and the statistics ``num_triplets``,
            ``active_fraction`` (triplets with a positive loss) and
            ``margin_mean``.
        """
        labels = gt_label.reshape(-1)
        if labels.numel() != student_embedding.size(0):
            raise ValueError(f'{labels.numel()} labels for '
                             f'{tuple(student_embedding.shape)} embeddings')
        xs, xt = prepare_embedding_pair(student_embedding, teacher_embedding,
                                        gather=self.gather)
        if self.gather:
            labels = gather_no_grad(labels)
        dtype = xs.dtype
        ds = embedding_distances(xs, self.metric)
        a, p, n = self._triplets(ds, labels)
        if a.numel() == 0:
            zero = xs.sum() * 0.0
            return dict(loss=zero, num_triplets=zero.detach(),
                        active_fraction=zero.detach(),
                        margin_mean=zero.detach())
        with torch.no_grad():
            dt = embedding_distances(xt, self.metric)
            delta = (dt[a, n] - dt[a, p]).clamp(min=0)
            # all-zero differences give frac = 0, i.e. the margin m_min
            frac = delta / delta.max().clamp(min=torch.finfo(dtype).tiny)
            margin = self.m_min + (self.m_max - self.m_min) * frac
        per = (ds[a, p] - ds[a, n] + margin).clamp(min=0)
        loss = self.loss_weight * per.mean()
        return dict(loss=loss,
                    num_triplets=loss.new_tensor(float(a.numel())),
                    active_fraction=(per.detach() > 0).to(dtype).mean(),
                    margin_mean=margin.mean())

    def extra_repr(self) -> str:
        return (f'm_min={self.m_min}, m_max={self.m_max}, '
                f'metric={self.metric!r}, mining={self.mining!r}, '
                f'gather={self.gather}, loss_weight={self.loss_weight}')

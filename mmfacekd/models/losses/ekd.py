r"""Evaluation-oriented Knowledge Distillation (EKD).

Implements *Evaluation-oriented Knowledge Distillation for Deep Face
Recognition* (Huang et al., CVPR 2022), see
``docs/papers.md`` §3.

Symbols: :math:`f^S_i, f^T_i` the L2-normalised student and teacher
embeddings of sample :math:`i` of the (global) batch, :math:`y_i` its
identity, :math:`x_{ij} = \langle f_i, f_j \rangle` the cosine similarity of
the pair :math:`(i, j)`, :math:`i < j`. A pair is *positive* if
:math:`y_i = y_j`, *negative* otherwise.

* **Anchors (thresholds at fixed FPRs).** For every FPR
  :math:`\epsilon_k \in \{10^{-1}, \dots, 10^{-6}\}` the threshold of one
  network is the negative similarity at index
  :math:`\lfloor N_{neg} / a_k \rfloor` (:math:`a_k = 1 / \epsilon_k`) of its
  negative similarities sorted in descending order, i.e. the similarity
  above which a fraction :math:`\epsilon_k` of the negatives lies. Each
  network keeps its own anchors :math:`a^S_k, a^T_k` as exponential moving
  averages :math:`a \leftarrow (1 - m)\, a + m\, \mathrm{thr}` (momentum
  :math:`m = 0.01`, starting at 0).
* **Rank function.** :math:`r(x) = \sum_k \sigma((x - a_k) / t)` with
  :math:`t = 0.01`: a soft count of the anchors a similarity exceeds, i.e.
  the soft "FPR bucket" of the pair, evaluated for each network with its own
  anchors.
* **Critical pairs.** All positive pairs plus the :math:`K = 2000` negative
  pairs with the largest *student* similarity (the hardest negatives for the
  student).
* **Loss.**

  .. math::
      \mathcal{L}_{EKD} = w \left( 0.02\, \frac{1}{|P|} \sum_{(i,j) \in P}
      (r^S_{ij} - r^T_{ij})^2 + 0.01\, \frac{1}{|N_K|} \sum_{(i,j) \in N_K}
      (r^S_{ij} - r^T_{ij})^2 \right)

  with :math:`P` the positive and :math:`N_K` the critical negative pairs,
  :math:`r^S = r(x^S; a^S)`, :math:`r^T = r(x^T; a^T)` and :math:`w` the
  loss weight (1.0 in the paper).

Deviations from Huang et al. (2022): none in the loss, the weights
(0.02 / 0.01, total weight 1) or the P×K batches (the sampler's
``cls_loss_on='random_part'``). Where the paper leaves a choice:

* **Anchor index.** ``min(N_neg // a_k, N_neg - 1)``: when the batch has
  fewer than :math:`a_k` negatives (the 1e-5 / 1e-6 anchors at usual batch
  sizes) the index is 0, i.e. the hardest negative; the clamp only binds for
  an FPR of 1 or more. Without any negative pair the anchors are not
  updated.
* **Update order.** In training mode the anchors are updated *first* with
  the current batch and the loss uses the updated anchors (the authors'
  code does the same). In eval mode the anchors are frozen (no update).
  Both sides update from the same batch, so with identical student and
  teacher embeddings the two anchor sets stay identical and the loss is 0.
* **Anchors are buffers** (``student_anchors``, ``teacher_anchors``, float32),
  so they are saved in checkpoints and restored on resume.
* **Distributed.** With ``gather=True`` the student embeddings are
  all-gathered with gradient (:func:`gather_with_grad`), the teacher
  embeddings and labels without; every rank computes the same loss on the
  global batch, and after DDP's gradient averaging the gradients equal those
  of one process on the concatenated batch. All ranks see the same global
  batch, so their anchors stay in sync without a broadcast.
* **Empty sets.** A batch without positive pairs gives 0 for the positive
  term (no NaN; the negative term and the anchor update proceed as usual);
  likewise 0 for the negative term without negatives. The zero keeps the
  graph attached to the student embeddings.
* Similarities are computed in float32 (float64 inputs stay float64, for
  gradcheck); the teacher side is detached.
"""
import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS

from ..utils import gather_no_grad
from .utils import BatchLoss, prepare_embedding_pair

__all__ = ['EKDLoss', 'ekd_anchor_thresholds', 'ekd_rank']

PAPER_FPRS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def ekd_anchor_thresholds(neg_sims: Tensor, divisors: Sequence[int]) -> Tensor:
    """Thresholds of one network at the FPRs ``1 / divisors``.

    Args:
        neg_sims (Tensor): (N_neg, ) similarities of the negative pairs,
            N_neg >= 1.
        divisors (Sequence[int]): :math:`a_k = 1 / \\epsilon_k`.

    Returns:
        Tensor: (len(divisors), ) the descending-sorted negative similarity at
        index ``min(N_neg // a_k, N_neg - 1)`` for each :math:`a_k`.
    """
    n = neg_sims.numel()
    if n == 0:
        raise ValueError('ekd_anchor_thresholds needs at least one negative')
    idx = [min(n // int(a), n - 1) for a in divisors]
    top = torch.topk(neg_sims, max(idx) + 1, sorted=True).values
    return top[idx]


def ekd_rank(sims: Tensor, anchors: Tensor, temperature: float) -> Tensor:
    r"""Soft rank :math:`r(x) = \sum_k \sigma((x - a_k) / t)` of each pair.

    Args:
        sims (Tensor): (M, ) pair similarities.
        anchors (Tensor): (A, ) anchors of the same network.
        temperature (float): :math:`t`.

    Returns:
        Tensor: (M, ) soft ranks in [0, A].
    """
    anchors = anchors.to(sims.dtype)
    return torch.sigmoid((sims.unsqueeze(1) - anchors.unsqueeze(0))
                         / temperature).sum(dim=1)


@MODELS.register_module()
class EKDLoss(BatchLoss):
    r"""Evaluation-oriented KD of *Evaluation-oriented Knowledge
    Distillation for Deep Face Recognition* (Huang et al., CVPR 2022).

    Matches the student's soft rank of every critical pair (all positives and
    the hardest negatives for the student) among the FPR anchors to the
    teacher's; see the module docstring for the equations and the choices
    made where the paper leaves one. The teacher side is detached.

    Args:
        fprs (Sequence[float]): FPRs of the anchors. Defaults to
            ``(1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)``.
        momentum (float): Moving-average momentum :math:`m` of the anchors
            (start value 0). Defaults to 0.01.
        temperature (float): Sigmoid temperature :math:`t` of the rank
            function. Defaults to 0.01.
        num_hard_negatives (int): Number :math:`K` of critical negative pairs
            (hardest for the student). Defaults to 2000.
        pos_weight (float): Weight of the positive-pair MSE. Defaults to 0.02.
        neg_weight (float): Weight of the critical-negative MSE.
            Defaults to 0.01.
        gather (bool): All-gather embeddings and labels over the ranks and
            compute the loss on the global batch. Defaults to True.
        log_fpr (float, optional): FPR whose anchors are logged as
            ``student_anchor`` / ``teacher_anchor`` (the entry of ``fprs``
            nearest on a log scale; None logs none). Defaults to 1e-4.
        loss_weight (float): Weight :math:`w` of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 fprs: Sequence[float] = PAPER_FPRS,
                 momentum: float = 0.01,
                 temperature: float = 0.01,
                 num_hard_negatives: int = 2000,
                 pos_weight: float = 0.02,
                 neg_weight: float = 0.01,
                 gather: bool = True,
                 log_fpr: Optional[float] = 1e-4,
                 loss_weight: float = 1.0) -> None:
        super().__init__(gather=gather, loss_weight=loss_weight)
        fprs = tuple(float(f) for f in fprs)
        if not fprs or any(not 0 < f < 1 for f in fprs):
            raise ValueError(f'fprs must be non-empty values in (0, 1), got '
                             f'{fprs}')
        if not 0 < momentum <= 1:
            raise ValueError(f'momentum must be in (0, 1], got {momentum}')
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        if num_hard_negatives < 1:
            raise ValueError('num_hard_negatives must be >= 1, got '
                             f'{num_hard_negatives}')
        self.fprs = fprs
        self.divisors = tuple(int(round(1.0 / f)) for f in fprs)
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.num_hard_negatives = int(num_hard_negatives)
        self.pos_weight = float(pos_weight)
        self.neg_weight = float(neg_weight)
        self.log_index: Optional[int] = None
        if log_fpr is not None:
            if log_fpr <= 0:
                raise ValueError(f'log_fpr must be > 0, got {log_fpr}')
            self.log_index = min(
                range(len(fprs)),
                key=lambda k: abs(math.log(fprs[k]) - math.log(log_fpr)))
        self.register_buffer('student_anchors', torch.zeros(len(fprs)))
        self.register_buffer('teacher_anchors', torch.zeros(len(fprs)))

    @torch.no_grad()
    def _update_anchors(self, s_neg: Tensor, t_neg: Tensor) -> None:
        m = self.momentum
        for buf, neg in ((self.student_anchors, s_neg),
                         (self.teacher_anchors, t_neg)):
            thr = ekd_anchor_thresholds(neg.detach(), self.divisors)
            buf.mul_(1.0 - m).add_(thr.to(buf.dtype), alpha=m)

    def _rank_mse(self, s_sims: Tensor, t_sims: Tensor) -> Tensor:
        if s_sims.numel() == 0:
            return s_sims.sum() * 0.0
        r_s = ekd_rank(s_sims, self.student_anchors, self.temperature)
        r_t = ekd_rank(t_sims, self.teacher_anchors, self.temperature)
        return F.mse_loss(r_s, r_t)

    def forward(self, student_embedding: Tensor, teacher_embedding: Tensor,
                gt_label: Tensor) -> Dict[str, Tensor]:
        """Compute the EKD loss.

        Args:
            student_embedding (Tensor): (B, D) student embeddings (need not
                be normalised).
            teacher_embedding (Tensor): (B, D') teacher embeddings.
            gt_label (Tensor): (B, ) identity labels.

        Returns:
            dict: ``loss`` (scalar) and the statistics ``num_pos``,
            ``num_neg`` (pairs of the global batch), ``num_hard_neg``,
            ``pos_rank_mse``, ``neg_rank_mse`` (unweighted terms) and, with
            ``log_fpr``, ``student_anchor`` / ``teacher_anchor``.
        """
        f_s, f_t = prepare_embedding_pair(student_embedding, teacher_embedding,
                                          normalize=True, gather=self.gather,
                                          flatten=False)
        labels = gt_label.reshape(-1)
        if labels.numel() != student_embedding.size(0):
            raise ValueError(f'{labels.numel()} labels for '
                             f'{student_embedding.size(0)} embeddings')
        if self.gather:
            labels = gather_no_grad(labels)

        n = f_s.size(0)
        rows, cols = torch.triu_indices(n, n, offset=1, device=f_s.device)
        s_sims = (f_s @ f_s.t())[rows, cols]
        with torch.no_grad():
            t_sims = (f_t @ f_t.t())[rows, cols]
        pos = labels[rows] == labels[cols]
        s_pos, t_pos = s_sims[pos], t_sims[pos]
        s_neg, t_neg = s_sims[~pos], t_sims[~pos]

        if self.training and s_neg.numel() > 0:
            self._update_anchors(s_neg, t_neg)

        pos_term = self._rank_mse(s_pos, t_pos)
        k = min(self.num_hard_negatives, s_neg.numel())
        hard = torch.topk(s_neg.detach(), k, sorted=False).indices
        neg_term = self._rank_mse(s_neg[hard], t_neg[hard])

        loss = self.loss_weight * (self.pos_weight * pos_term
                                   + self.neg_weight * neg_term)
        out = dict(loss=loss,
                   num_pos=loss.new_tensor(float(s_pos.numel())),
                   num_neg=loss.new_tensor(float(s_neg.numel())),
                   num_hard_neg=loss.new_tensor(float(k)),
                   pos_rank_mse=pos_term.detach(),
                   neg_rank_mse=neg_term.detach())
        if self.log_index is not None:
            k = self.log_index
            out['student_anchor'] = self.student_anchors[k].clone()
            out['teacher_anchor'] = self.teacher_anchors[k].clone()
        return out

    def extra_repr(self) -> str:
        return (f'fprs={self.fprs}, momentum={self.momentum}, '
                f'temperature={self.temperature}, '
                f'num_hard_negatives={self.num_hard_negatives}, '
                f'pos_weight={self.pos_weight}, neg_weight={self.neg_weight}, '
                f'gather={self.gather}, loss_weight={self.loss_weight}')

"""GKD (Zhao et al., AAAI 2023) eq. 11 on class-sharded logits."""
from typing import Dict, Optional

import torch
from torch import Tensor

from mmfacekd.registry import MODELS

from ..gkd.loss import GKDLoss
from .grouped_kl import sharded_grouped_kl_terms
from .inputs import check_sharded_logits
from .selection import sharded_batch_k, sharded_group_classes
from .softmax import sharded_softmax_stats

__all__ = ['ShardedGKDLoss']


@MODELS.register_module()
class ShardedGKDLoss(GKDLoss):
    r""":class:`GKDLoss` (same arguments, same eq. 11, same outputs) when
    every rank holds all ``B`` rows of the global batch and its own columns
    of the student and teacher logits (``PartialFCHead`` and a sharded
    teacher head).

    The primary group is found exactly across the shards
    (:func:`sharded_group_classes`: eq. 3 per sample, or the batch / fixed
    ``k``, ties to the lower global column, ``force_target`` swapping the
    target in for the last class of :math:`\Phi`), the KL terms from
    group sums reduced over the ranks (:func:`sharded_grouped_kl_terms`).
    Every rank returns the same loss; each rank's student columns get the
    single-process gradient. ``gt_label`` are global columns
    (``PartialFCHead``'s ``column_label``).

    With sampled classes (``sample_rate < 1``) every distribution, the
    ranking of eq. 3 included, is over the sampled support, i.e. the
    softmaxes restricted to and renormalised on the union of the ranks'
    kept columns (see :class:`ShardedKDLoss`).

    ``selection`` and ``reuse_buffers`` have no effect here (the sharded
    search is its own exact implementation).
    """

    def forward(self,
                student_logits: Tensor,
                teacher_logits: Tensor,
                gt_label: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Compute the loss from the local columns (B, C_l) of both and,
        with ``force_target``, the global column labels (B, )."""
        columns = check_sharded_logits('ShardedGKDLoss', student_logits,
                                       teacher_logits, gt_label,
                                       need_label=self.force_target)
        dtype = student_logits.dtype
        if dtype not in (torch.float32, torch.float64):
            dtype = torch.float32
        with torch.no_grad():
            by_student = self.rank_by == 'student'
            rank = (student_logits if by_student else teacher_logits)
            rank = rank.detach().to(dtype)
            stats, k = None, None
            if self.k_mode == 'batch':
                k = sharded_batch_k(rank, sharded_softmax_stats(rank),
                                    columns.total, self.tau,
                                    self.batch_k_step)
            elif self.k_mode == 'fixed':
                k = rank.new_full((rank.size(0), ),
                                  min(self.fixed_k, columns.total),
                                  dtype=torch.long)
            else:
                stats = sharded_softmax_stats(rank, self.temperature)
            grouping = sharded_group_classes(
                rank, stats, columns.offset, columns.total, tau=self.tau,
                k=k, gt_label=gt_label if self.force_target else None)
        # eq. 3's softmax at T is the one of the KL terms: computed once
        shared = dict(student_stats=stats) if by_student else \
            dict(teacher_stats=stats)
        terms = sharded_grouped_kl_terms(
            student_logits, teacher_logits, grouping.mask, self.temperature,
            **(shared if stats is not None else {}))
        return self.summarize(terms, grouping.k, dtype)

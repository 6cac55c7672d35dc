"""Logit distillation on class-sharded logits (model parallelism over the
classes, :class:`~mmfacekd.models.heads.PartialFCHead`): every rank holds
all rows of the global batch and its own columns of the student and the
teacher logits; softmax statistics, GKD's eq. 3 and the group sums are
reduced across the ranks, and every rank computes the same loss.

* :mod:`.softmax` — shift and sum of exponentials across shards;
* :mod:`.selection` — GKD eq. 2-3 (and the batch / fixed ``k``) exactly
  across shards;
* :mod:`.grouped_kl` — GKD eq. 5, 6, 9 from reduced group sums;
* :mod:`.kd`, :mod:`.dkd`, :mod:`.gkd` — the registered losses.
"""
from .dkd import ShardedDKDLoss
from .gkd import ShardedGKDLoss
from .grouped_kl import sharded_grouped_kl_terms
from .kd import ShardedKDLoss
from .selection import (
                        ShardedGrouping,
                        sharded_batch_k,
                        sharded_group_classes,
)
from .softmax import sharded_softmax_stats

__all__ = [
    'ShardedKDLoss', 'ShardedDKDLoss', 'ShardedGKDLoss',
    'sharded_grouped_kl_terms', 'sharded_group_classes', 'sharded_batch_k',
    'ShardedGrouping', 'sharded_softmax_stats'
]

"""Grouped Knowledge Distillation (Zhao et al., AAAI 2023), see
``docs/papers.md`` §1. Where each equation lives:

* eq. 2-3 (:math:`\\Phi`, per-sample / batch / fixed :math:`k`):
  :mod:`.selection` (exact sort path; the sampled CPU search is in
  :mod:`.band_search`);
* eq. 5, 6, 9 (within-group and binary KLs): :mod:`.grouped_kl`;
* eq. 11 (the weighted loss, :class:`GKDLoss`): :mod:`.loss`.
"""
from .grouped_kl import GroupedKLTerms, grouped_kl_terms
from .loss import GKDLoss
from .selection import primary_group_mask, select_batch_k, select_primary_k
from .softmax import SoftmaxStats, softmax_stats

__all__ = [
    'GKDLoss', 'GroupedKLTerms', 'SoftmaxStats', 'softmax_stats',
    'select_primary_k', 'select_batch_k', 'primary_group_mask',
    'grouped_kl_terms'
]

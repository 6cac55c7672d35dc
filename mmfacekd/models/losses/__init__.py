"""Distillation losses."""
from .dkd import DKDLoss, dkd_terms
from .gkd import (GKDLoss, GroupedKLTerms, SoftmaxStats, grouped_kl_terms,
                  primary_group_mask, select_batch_k, select_primary_k,
                  softmax_stats)
from .kd import KDLoss

__all__ = [
    'KDLoss', 'DKDLoss', 'GKDLoss', 'dkd_terms', 'GroupedKLTerms',
    'SoftmaxStats', 'grouped_kl_terms', 'primary_group_mask',
    'select_batch_k', 'select_primary_k', 'softmax_stats'
]

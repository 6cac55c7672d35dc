"""Distillation losses."""
from .cakd import CAKDLoss, LocalSelfAttention
from .dkd import DKDLoss, dkd_terms
from .ekd import EKDLoss, ekd_anchor_thresholds, ekd_rank
from .feature_mse import FeatureMSELoss, to_feature_map
from .gkd import (GKDLoss, GroupedKLTerms, SoftmaxStats, grouped_kl_terms,
                  primary_group_mask, select_batch_k, select_primary_k,
                  softmax_stats)
from .kd import KDLoss

__all__ = [
    'CAKDLoss', 'LocalSelfAttention', 'FeatureMSELoss', 'to_feature_map',
    'EKDLoss', 'ekd_anchor_thresholds', 'ekd_rank',
    'KDLoss', 'DKDLoss', 'GKDLoss', 'dkd_terms', 'GroupedKLTerms',
    'SoftmaxStats', 'grouped_kl_terms', 'primary_group_mask',
    'select_batch_k', 'select_primary_k', 'softmax_stats'
]

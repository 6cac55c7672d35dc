"""Distillation losses."""
from .adadistill import AdaDistillLoss, adaptive_alpha, ema_center_update
from .cakd import CAKDLoss, LocalSelfAttention
from .cckd import CCKDLoss, taylor_rbf_correlation
from .darkrank import DarkRankLoss
from .dkd import DKDLoss, dkd_terms
from .ekd import EKDLoss, ekd_anchor_thresholds, ekd_rank
from .feature_mse import FeatureMSELoss, to_feature_map
from .fitnet import FitNetLoss
from .gkd import (
                  GKDLoss,
                  GroupedKLTerms,
                  SoftmaxStats,
                  grouped_kl_terms,
                  primary_group_mask,
                  select_batch_k,
                  select_primary_k,
                  softmax_stats,
)
from .kd import KDLoss
from .margin_distillation import MarginDistillationLoss, load_class_centers
from .rkd import RKDLoss, pairwise_distances
from .sharded import ShardedDKDLoss, ShardedGKDLoss, ShardedKDLoss
from .shrinkteanet import ShrinkTeaNetLoss
from .sp import SPLoss, sp_similarity
from .triplet_distillation import TripletDistillationLoss, embedding_distances

__all__ = [
    'CAKDLoss', 'LocalSelfAttention', 'FeatureMSELoss', 'to_feature_map',
    'EKDLoss', 'ekd_anchor_thresholds', 'ekd_rank',
    'KDLoss', 'DKDLoss', 'GKDLoss', 'dkd_terms', 'GroupedKLTerms',
    'SoftmaxStats', 'grouped_kl_terms', 'primary_group_mask',
    'select_batch_k', 'select_primary_k', 'softmax_stats',
    'FitNetLoss', 'RKDLoss', 'pairwise_distances', 'SPLoss', 'sp_similarity',
    'CCKDLoss', 'taylor_rbf_correlation', 'DarkRankLoss', 'ShrinkTeaNetLoss',
    'TripletDistillationLoss', 'embedding_distances',
    'MarginDistillationLoss', 'load_class_centers',
    'ShardedKDLoss', 'ShardedDKDLoss', 'ShardedGKDLoss',
    'AdaDistillLoss', 'adaptive_alpha', 'ema_center_update'
]

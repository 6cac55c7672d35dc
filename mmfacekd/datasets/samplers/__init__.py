"""Data samplers (registered in mmfacekd's DATA_SAMPLERS)."""
from .identity_balanced_sampler import (
                                        IdentityBalancedBatchSampler,
                                        IdentityBalancedSampler,
                                        dataset_labels,
)
from .sample_index import SampleIndex, index_meta

__all__ = ['IdentityBalancedSampler', 'IdentityBalancedBatchSampler',
           'dataset_labels', 'SampleIndex', 'index_meta']

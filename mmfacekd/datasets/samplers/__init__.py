"""Data samplers (registered in mmfacekd's DATA_SAMPLERS)."""
from .identity_balanced_sampler import (IdentityBalancedBatchSampler,
                                        IdentityBalancedSampler,
                                        dataset_labels)

__all__ = ['IdentityBalancedSampler', 'IdentityBalancedBatchSampler',
           'dataset_labels']

from .identification import IdentificationMetric
from .ijb import IJBMetric, read_pair_file
from .verification import (
                           VerificationMetric,
                           contiguous_folds,
                           tar_at_far,
                           verification_accuracy,
)

__all__ = ['VerificationMetric', 'verification_accuracy', 'tar_at_far',
           'contiguous_folds', 'IdentificationMetric', 'IJBMetric',
           'read_pair_file']

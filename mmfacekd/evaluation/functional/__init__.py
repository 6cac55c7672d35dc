"""Pure evaluation math (numpy/torch), independent of MMEngine."""
from .identification import (fpr_key, identification_metrics,
                             num_false_accepts_allowed, threshold_at_fpr)

__all__ = ['identification_metrics', 'fpr_key', 'threshold_at_fpr',
           'num_false_accepts_allowed']

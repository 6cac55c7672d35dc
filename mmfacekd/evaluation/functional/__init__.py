"""Pure evaluation math (numpy/torch), independent of MMEngine."""
from .identification import (
    fpr_key,
    identification_metrics,
    num_false_accepts_allowed,
    threshold_at_fpr,
)
from .ijb import (
    DEFAULT_FPRS,
    roc_curve,
    score_pairs,
    template_pooling,
    tpr_at_fpr,
)

__all__ = ['identification_metrics', 'fpr_key', 'threshold_at_fpr',
           'num_false_accepts_allowed', 'DEFAULT_FPRS', 'roc_curve',
           'score_pairs', 'template_pooling', 'tpr_at_fpr']

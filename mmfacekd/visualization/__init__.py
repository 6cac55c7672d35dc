"""Pictures: GKD Fig. 1 for a checkpoint pair and multi-model IJB ROC curves
(``tools/analysis/plot_gkd_predictions.py``, ``tools/analysis/plot_roc.py``;
``docs/visualization.md``). Nothing here is registered."""
from .gkd_predictions import (
    SPLIT_GID,
    GKDPrediction,
    gkd_prediction,
    plot_gkd_prediction,
)
from .roc import (
    RocCurve,
    legend_label,
    load_ijb_scores,
    plot_roc_curves,
    roc_from_scores,
)

__all__ = ['SPLIT_GID', 'GKDPrediction', 'gkd_prediction',
           'plot_gkd_prediction', 'RocCurve', 'legend_label',
           'load_ijb_scores', 'plot_roc_curves', 'roc_from_scores']

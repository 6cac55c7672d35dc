"""ROC curves of IJB-style 1:1 template verification for several models.

The curve and the TPR@FPR are those of :class:`~mmfacekd.evaluation.IJBMetric`
(:func:`~mmfacekd.evaluation.functional.ijb.roc_curve`, identical to
scikit-learn's and hence to insightface's ``eval_ijbc.py``, and
:func:`~mmfacekd.evaluation.functional.ijb.tpr_at_fpr`, insightface's
nearest-FPR rule), computed from the pair scores the metric dumps
(``<work_dir>/scores/<set>.npz``, see
:mod:`mmfacekd.evaluation.metrics.scores`).
"""
import os
import os.path as osp
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from mmfacekd.evaluation.functional.identification import fpr_key
from mmfacekd.evaluation.functional.ijb import roc_curve, tpr_at_fpr

from .figure import finish, new_axes

__all__ = ['RocCurve', 'roc_from_scores', 'load_ijb_scores',
           'plot_roc_curves', 'legend_label']


class RocCurve(NamedTuple):
    """One model's ROC: ``fpr``/``tpr`` (the metric's points, float64),
    ``tpr_at`` = ``{fpr target: tpr}`` (fractions) and the pair count."""
    name: str
    fpr: np.ndarray
    tpr: np.ndarray
    tpr_at: Dict[float, float]
    n_pairs: int


def roc_from_scores(name: str, scores: np.ndarray, labels: np.ndarray,
                    fprs: Sequence[float] = (1e-4, 1e-5)) -> RocCurve:
    """The IJB metric's ROC and TPR@FPR of one model's pair scores."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return RocCurve(name, fpr, tpr, tpr_at_fpr(fpr, tpr, fprs), len(scores))


def load_ijb_scores(path: str, set_name: Optional[str] = None
                    ) -> Tuple[str, np.ndarray, np.ndarray]:
    """``(set name, scores, labels)`` from an IJB score dump.

    Args:
        path (str): A ``<set>.npz`` written by ``IJBMetric`` or the folder
            holding them (``<work_dir>/scores`` of ``tools/test.py``).
        set_name (str, optional): The set to read from a folder; needed
            when it holds more than one IJB set.
    """
    if osp.isdir(path):
        sets = []
        for fn in sorted(f for f in os.listdir(path) if f.endswith('.npz')):
            with np.load(osp.join(path, fn)) as z:
                if 'protocol' in z.files and str(z['protocol']) == 'ijb':
                    sets.append(fn[:-4])
        if set_name is None and len(sets) == 1:
            set_name = sets[0]
        if set_name not in sets:
            raise FileNotFoundError(
                f'{path}: ' + (f'no IJB score dump {set_name!r}' if set_name
                               else 'pass --set, one of the IJB sets')
                + f' (IJB sets here: {sets or "none"}); tools/test.py writes '
                '<work_dir>/scores/<set>.npz unless '
                'IJBMetric(dump_scores=False).')
        path = osp.join(path, f'{set_name}.npz')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: no such score dump.')
    with np.load(path) as z:
        protocol = str(z['protocol']) if 'protocol' in z.files else None
        if protocol != 'ijb':
            raise ValueError(f'{path}: not an IJB score dump (needs '
                             "protocol='ijb', scores and labels).")
        scores, labels = z['scores'], z['labels']
    return osp.splitext(osp.basename(path))[0], scores, labels


def legend_label(curve: RocCurve) -> str:
    """``name (TPR@1e-4 = 89.13 %, TPR@1e-5 = 81.65 %)``, percent with two
    decimals, as the metric logs them."""
    parts = ', '.join(f'TPR@{fpr_key(f)} = {v * 100:.2f} %'
                      for f, v in curve.tpr_at.items())
    return f'{curve.name} ({parts})'


def plot_roc_curves(curves: Sequence[RocCurve], out: Optional[str] = None,
                    title: str = 'IJB 1:1 verification ROC',
                    min_fpr: Optional[float] = None):
    """TPR against FPR (log x) of every curve on one plot.

    Each line is the metric's ROC without its FPR = 0 points (not on a log
    axis), labelled by :func:`legend_label`; each ``tpr_at`` target is a
    dotted vertical line. Returns the matplotlib ``Figure`` (saved to
    ``out`` when given).
    """
    if not curves:
        raise ValueError('plot_roc_curves needs at least one curve.')
    fig, ax = new_axes((6.4, 4.8))
    lowest = 1.0
    for c in curves:
        keep = c.fpr > 0
        ax.plot(c.fpr[keep], c.tpr[keep] * 100, lw=1.3, label=legend_label(c))
        if keep.any():
            lowest = min(lowest, float(c.fpr[keep].min()))
    targets = sorted({f for c in curves for f in c.tpr_at})
    for f in targets:
        ax.axvline(f, color='gray', ls=':', lw=0.8)
    lowest = min([lowest] + targets)
    ax.set_xscale('log')
    ax.set_xlim(min_fpr or lowest / 2, 1.0)
    ax.set_xlabel('False Positive Rate')
    ax.set_ylabel('True Positive Rate (%)')
    ax.set_title(title)
    return finish(fig, ax, out, 'lower right', grid='both')

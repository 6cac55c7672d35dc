"""Per-pair / per-probe score dumps and paired comparisons between runs.

Each metric writes, per evaluated set, ``<scores_dir>/<set>.npz`` with what
its protocol needs to be recomputed and bootstrapped later (default
``scores_dir``: ``<work_dir>/scores`` of the running MMEngine Runner):

* verification: ``dist`` (squared distance per pair, float32), ``issame``,
  ``n_folds``;
* IJB: ``scores`` (cosine per template pair), ``labels``, ``fprs``;
* 1:N identification: ``pair_probe`` (probe index of each ordered
  same-identity (probe, gallery) pair), ``pair_rank`` (rank of the gallery
  image among the distractors, ``1 + #{d: s(p, d) >= s(p, g)}``, capped at
  ``max(ranks) + 1``), ``ranks``.

plus ``protocol`` (``'verification'``, ``'ijb'``, ``'identification'``).
``scores/mean.json`` names the sets of ``mean/accuracy``.

:func:`paired_comparison` loads two such folders (two checkpoints evaluated
on the same sets) and gives, for each headline metric, the difference
``a − b`` (percentage points) and its paired bootstrap interval: the same
resampled pairs (probes) for both runs, each run's metric recomputed by its
full protocol on them (:mod:`mmfacekd.evaluation.functional.bootstrap`).
"""
import json
import os
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from mmengine.evaluator import BaseMetric

from ..functional.bootstrap import (
    DEFAULT_N_BOOT,
    cluster_mean_replicates,
    paired_ci,
    tpr_at_fpr_replicates,
    verification_fold_accuracies,
    verification_replicates,
)
from ..functional.identification import fpr_key
from ..functional.ijb import roc_curve, tpr_at_fpr

__all__ = ['run_work_dir', 'resolve_scores_dir', 'save_scores',
           'load_scores', 'paired_comparison', 'HEADLINE_IJB_FPR',
           'BootstrapMetric']

#: the IJB FPR of the headline paired column
HEADLINE_IJB_FPR = 1e-4


class BootstrapMetric(BaseMetric):
    """Base of the metrics with bootstrap intervals and score dumps.

    Stores the arguments the verification, IJB and 1:N identification
    metrics share (documented there); subclasses take their own arguments
    and pass the rest on as keywords.

    Args:
        ci_level (float, optional): Interval level; None: no intervals.
            Defaults to 0.95.
        n_bootstrap (int): Replicates. Defaults to 1000.
        bootstrap_seed (int): Seed (with the set name). Defaults to 0.
        dump_scores (bool): Write the scores. Defaults to True.
        scores_dir (str, optional): Defaults to ``<work_dir>/scores``.
        collect_device (str): See :class:`BaseMetric`. Defaults to 'cpu'.
        prefix (str, optional): See :class:`BaseMetric`.
    """
    default_prefix: Optional[str] = None

    def __init__(self,
                 ci_level: Optional[float] = 0.95,
                 n_bootstrap: int = DEFAULT_N_BOOT,
                 bootstrap_seed: int = 0,
                 dump_scores: bool = True,
                 scores_dir: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ci_level = ci_level
        self.n_bootstrap = int(n_bootstrap)
        self.bootstrap_seed = int(bootstrap_seed)
        self.dump_scores = dump_scores
        self.scores_dir = scores_dir


def run_work_dir() -> Optional[str]:
    """The work dir of the running MMEngine Runner, or None.

    The Runner logs to ``<work_dir>/<timestamp>/<timestamp>.log``; the
    current :class:`MMLogger`'s file gives the work dir back.
    """
    from mmengine.logging import MMLogger
    log_file = getattr(MMLogger.get_current_instance(), 'log_file', None)
    if not log_file:
        return None
    log_dir = osp.dirname(osp.abspath(log_file))
    stem = osp.splitext(osp.basename(log_file))[0]
    if osp.basename(log_dir) != stem:
        return None
    return osp.dirname(log_dir)


def resolve_scores_dir(scores_dir: Optional[str],
                       dump_scores: bool) -> Optional[str]:
    """``scores_dir`` if given; else ``<work_dir>/scores`` of the running
    Runner; None when dumping is off or there is no Runner."""
    if not dump_scores:
        return None
    if scores_dir:
        return scores_dir
    work_dir = run_work_dir()
    return osp.join(work_dir, 'scores') if work_dir else None


def save_scores(scores_dir: Optional[str], set_name: str, protocol: str,
                **arrays) -> Optional[str]:
    """Write ``<scores_dir>/<set_name>.npz``; return its path."""
    if not scores_dir:
        return None
    os.makedirs(scores_dir, exist_ok=True)
    path = osp.join(scores_dir, f'{set_name}.npz')
    np.savez_compressed(path, protocol=np.array(protocol), **arrays)
    return path


def save_mean_sets(scores_dir: Optional[str], mean_sets: Sequence[str]):
    if scores_dir:
        os.makedirs(scores_dir, exist_ok=True)
        with open(osp.join(scores_dir, 'mean.json'), 'w') as f:
            json.dump({'mean/accuracy': list(mean_sets)}, f)


def load_scores(scores_dir: str) -> Dict[str, Dict[str, np.ndarray]]:
    """``{set name: arrays}`` of every ``*.npz`` in ``scores_dir``, plus
    ``'__mean__'``: the sets of ``mean/accuracy`` if recorded."""
    out: Dict[str, Dict] = {}
    if not osp.isdir(scores_dir):
        return out
    for fn in sorted(os.listdir(scores_dir)):
        if fn.endswith('.npz'):
            with np.load(osp.join(scores_dir, fn)) as z:
                out[fn[:-4]] = {k: z[k] for k in z.files}
    mean = osp.join(scores_dir, 'mean.json')
    if osp.isfile(mean):
        with open(mean) as f:
            out['__mean__'] = json.load(f)
    return out


def _same(a, b, key, name):
    if a[key].shape != b[key].shape or not np.array_equal(a[key], b[key]):
        raise ValueError(
            f'paired comparison of {name!r}: the two runs were not scored on '
            f'the same pairs ({key} differs); evaluate both checkpoints on '
            'the same test set.')


def _point(d: Dict[str, np.ndarray], protocol: str, fpr: float) -> float:
    if protocol == 'verification':
        return float(verification_fold_accuracies(
            d['dist'], d['issame'], int(d['n_folds'])).mean())
    if protocol == 'ijb':
        fpr_arr, tpr_arr, _ = roc_curve(d['scores'], d['labels'])
        return tpr_at_fpr(fpr_arr, tpr_arr, (fpr, ))[fpr]
    return float(np.mean(d['pair_rank'] <= 1))


def _replicates(d, protocol, name, fpr, n_boot, seed) -> np.ndarray:
    if protocol == 'verification':
        return verification_replicates(d['dist'], d['issame'], n_boot, seed,
                                       name, int(d['n_folds']))
    if protocol == 'ijb':
        return tpr_at_fpr_replicates(d['scores'], d['labels'], (fpr, ),
                                     n_boot, seed, name)[:, 0]
    return cluster_mean_replicates(d['pair_rank'] <= 1, d['pair_probe'],
                                   n_boot, seed, name)


_CHECK = dict(verification=('issame', ), ijb=('labels', ),
              identification=('pair_probe', ))


def paired_comparison(dir_a: str, dir_b: str,
                      n_bootstrap: int = DEFAULT_N_BOOT, seed: int = 0,
                      ci_level: float = 0.95,
                      ijb_fpr: float = HEADLINE_IJB_FPR
                      ) -> Dict[str, Tuple[float, float, float]]:
    """Paired differences ``a − b`` (percentage points) between two runs'
    score dumps: ``{metric key: (difference, ci_low, ci_high)}``.

    Keys: ``<set>/accuracy`` of every verification set both runs have,
    ``mean/accuracy`` (over the recorded mean sets, each set's replicates
    drawn independently, then averaged), ``<set>/tpr@fpr1e-4`` of IJB sets
    and ``<set>/rank1`` of 1:N sets. A replicate uses the same resampled
    pairs / probes for both runs (same seed and set name).
    """
    a, b = load_scores(dir_a), load_scores(dir_b)
    out: Dict[str, Tuple[float, float, float]] = {}
    reps: Dict[str, Tuple[np.ndarray, np.ndarray, float]] = {}
    for name in sorted(set(a) & set(b) - {'__mean__'}):
        da, db = a[name], b[name]
        protocol = str(da['protocol'])
        if protocol != str(db['protocol']) or protocol not in _CHECK:
            continue
        for key in _CHECK[protocol]:
            _same(da, db, key, name)
        ra = _replicates(da, protocol, name, ijb_fpr, n_bootstrap, seed)
        rb = _replicates(db, protocol, name, ijb_fpr, n_bootstrap, seed)
        diff = _point(da, protocol, ijb_fpr) - _point(db, protocol, ijb_fpr)
        _, lo, hi = paired_ci(ra, rb, ci_level)
        metric = dict(verification='accuracy', ijb=f'tpr@fpr'
                      f'{fpr_key(ijb_fpr)}', identification='rank1')[protocol]
        out[f'{name}/{metric}'] = (diff * 100, lo * 100, hi * 100)
        if protocol == 'verification':
            reps[name] = (ra, rb, diff)
    mean_sets = a.get('__mean__', {}).get('mean/accuracy') or sorted(reps)
    if mean_sets and all(s in reps for s in mean_sets):
        ra = np.mean([reps[s][0] for s in mean_sets], 0)
        rb = np.mean([reps[s][1] for s in mean_sets], 0)
        _, lo, hi = paired_ci(ra, rb, ci_level)
        diff = float(np.mean([reps[s][2] for s in mean_sets]))
        out['mean/accuracy'] = (diff * 100, lo * 100, hi * 100)
    return out

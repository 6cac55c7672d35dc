"""1:1 verification accuracy on pair sets (LFW protocol, as insightface)."""
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.logging import MMLogger

from mmfacekd.registry import METRICS

from ..functional.bootstrap import (
    percentile_ci,
    verification_replicates,
)
from .scores import (
    BootstrapMetric,
    resolve_scores_dir,
    save_mean_sets,
    save_scores,
)


def contiguous_folds(n: int, n_folds: int = 10) -> List[np.ndarray]:
    """Test indices of ``KFold(n_folds, shuffle=False)``: contiguous blocks,
    the first ``n % n_folds`` one element larger."""
    sizes = np.full(n_folds, n // n_folds)
    sizes[:n % n_folds] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [np.arange(bounds[i], bounds[i + 1]) for i in range(n_folds)]


def _accuracy_per_threshold(dist: np.ndarray, issame: np.ndarray,
                            thresholds: np.ndarray) -> np.ndarray:
    """Accuracy of ``dist < t`` for every threshold, without a Python loop."""
    order = np.argsort(dist, kind='stable')
    d_sorted, same_sorted = dist[order], issame[order]
    # number of pairs with dist < t, and how many of those are genuine
    n_below = np.searchsorted(d_sorted, thresholds, side='left')
    cum_same = np.concatenate([[0], np.cumsum(same_sorted)])
    tp = cum_same[n_below]
    fp = n_below - tp
    tn = (len(dist) - issame.sum()) - fp
    return (tp + tn) / dist.size


def verification_accuracy(emb1: np.ndarray, emb2: np.ndarray,
                          issame: np.ndarray, n_folds: int = 10
                          ) -> Tuple[np.ndarray, float]:
    """The LFW 10-fold protocol on L2-normalized embeddings.

    ``d = ‖e1 − e2‖²`` (float32 like insightface); thresholds
    ``arange(0, 4, 0.01)``; per fold the first best threshold on the other
    folds is applied to the held-out fold.

    Returns:
        (fold accuracies, mean of the chosen thresholds).
    """
    thresholds = np.arange(0, 4, 0.01)
    diff = np.subtract(emb1, emb2)
    dist = np.sum(np.square(diff), 1)
    issame = np.asarray(issame, dtype=bool)
    accs, best = [], []
    all_idx = np.arange(len(dist))
    for test in contiguous_folds(len(dist), n_folds):
        train = np.setdiff1d(all_idx, test)
        acc_train = _accuracy_per_threshold(dist[train], issame[train],
                                            thresholds)
        t = thresholds[np.argmax(acc_train)]
        pred = dist[test] < t
        accs.append(np.mean(pred == issame[test]))
        best.append(t)
    return np.asarray(accs), float(np.mean(best))


def tar_at_far(emb1: np.ndarray, emb2: np.ndarray, issame: np.ndarray,
               far_target: float = 1e-3, n_folds: int = 10) -> float:
    """insightface's "VAL@FAR": per fold, the threshold (grid 0…4 step 0.001)
    whose training FAR equals ``far_target`` by linear interpolation, applied
    to the held-out fold; mean over folds."""
    thresholds = np.arange(0, 4, 0.001)
    dist = np.sum(np.square(np.subtract(emb1, emb2)), 1)
    issame = np.asarray(issame, dtype=bool)
    all_idx = np.arange(len(dist))
    vals = []
    for test in contiguous_folds(len(dist), n_folds):
        train = np.setdiff1d(all_idx, test)
        d_neg = np.sort(dist[train][~issame[train]])
        far_train = np.searchsorted(d_neg, thresholds, side='left') / max(
            len(d_neg), 1)
        t = (np.interp(far_target, far_train, thresholds)
             if far_train.max() >= far_target else 0.0)
        pred = dist[test] < t
        n_same = issame[test].sum()
        vals.append((pred & issame[test]).sum() / n_same if n_same else 0.0)
    return float(np.mean(vals))


def _to_numpy(x) -> np.ndarray:
    return np.asarray(x.numpy() if hasattr(x, 'numpy') else x,
                      dtype=np.float32)


@METRICS.register_module()
class VerificationMetric(BootstrapMetric):
    """Verification accuracy of one or more pair sets in a single val loop.

    Keeps one result per image (``set_name``, ``sample_idx``, embedding,
    ``pair_label``, ``xnorm``), so distributed collection keeps every sample
    regardless of batch boundaries; pairs ``(2i, 2i+1)`` are rebuilt per
    set by ``sample_idx``. Embeddings are the flip-summed outputs of
    :meth:`FaceRecognizer.predict`, L2-normalized here.

    Reported per set (``<set>/…``): ``accuracy`` and ``accuracy_std`` (10
    folds, %, ddof 0), ``best_threshold`` (mean over folds of the chosen
    squared-distance threshold), ``tar@far1e-3`` (%), ``xnorm``; plus
    ``mean/accuracy`` over sets (for ``save_best``).

    Confidence intervals (``ci_level`` not None): ``<set>/accuracy_ci_low``
    and ``<set>/accuracy_ci_high`` (%), the percentile interval of
    ``n_bootstrap`` seeded bootstrap replicates of the 10-fold accuracy —
    pairs resampled within their fold and the whole protocol, threshold
    selection included, rerun on each resample
    (:func:`~mmfacekd.evaluation.functional.bootstrap.verification_replicates`;
    about 1 s per 3,000-pair set for 1000 replicates); ``mean/accuracy_ci_low``
    / ``_ci_high`` from the per-set replicates averaged over ``mean_sets``.
    Unless ``dump_scores=False``, each set's per-pair squared distances and
    labels go to ``<scores_dir>/<set>.npz`` (default ``<work_dir>/scores``
    of the running Runner) for paired comparisons between checkpoints
    (:func:`mmfacekd.evaluation.metrics.scores.paired_comparison`).

    Args:
        n_folds (int): Defaults to 10.
        far_target (float): Defaults to 1e-3.
        mean_sets (Sequence[str], optional): Sets averaged into
            ``mean/accuracy`` (e.g. the unmasked sets when masked M-M/M-N
            variants are evaluated too). Defaults to None: every set.
        ci_level (float, optional): Interval level; None: no intervals.
            Defaults to 0.95.
        n_bootstrap (int): Bootstrap replicates. Defaults to 1000.
        bootstrap_seed (int): Seed of the resamples (with the set name).
            Defaults to 0.
        dump_scores (bool): Write the per-pair scores. Defaults to True.
        scores_dir (str, optional): Where they go. Defaults to
            ``<work_dir>/scores`` (nothing is written without a Runner).
        **kwargs: These five, ``collect_device`` and ``prefix``, passed
            as keywords to :class:`~.scores.BootstrapMetric`.
    """

    def __init__(self, n_folds: int = 10, far_target: float = 1e-3,
                 mean_sets: Optional[Sequence[str]] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_folds = n_folds
        self.far_target = far_target
        self.mean_sets = None if mean_sets is None else list(mean_sets)
        self._replicates: Dict[str, np.ndarray] = {}
        self._scores_dir: Optional[str] = None

    def process(self, data_batch, data_samples: Sequence) -> None:
        for ds in data_samples:
            get = ds.get
            if get('eval_protocol', 'verification') != 'verification':
                continue  # an IJB / identification image of a mixed test set
            result = dict(
                set_name=get('set_name'), sample_idx=int(get('sample_idx')),
                pair_label=bool(get('pair_label')),
                embedding=_to_numpy(get('pred_embedding')),
                xnorm=float(get('xnorm')))
            if get('teacher_embedding', None) is not None:
                # a distiller evaluating its teacher too (TeacherEvalHook)
                result['teacher_embedding'] = _to_numpy(
                    get('teacher_embedding'))
                result['teacher_xnorm'] = float(get('teacher_xnorm'))
            self.results.append(result)

    @staticmethod
    def group_by_set(results: List[dict]) -> Dict[str, List[dict]]:
        groups = defaultdict(list)
        for r in results:
            groups[r['set_name']].append(r)
        return groups

    def evaluate_set(self, name: str, items: List[dict],
                     emb_key: str = 'embedding', xnorm_key: str = 'xnorm',
                     prefix: str = '') -> Dict[str, float]:
        items = sorted(items, key=lambda r: r['sample_idx'])
        idx = [r['sample_idx'] for r in items]
        if idx != list(range(len(items))) or len(items) % 2:
            raise ValueError(
                f'Verification set {name!r}: got image indices that are not '
                f'exactly 0..2P-1 ({len(items)} results); every image of a '
                'pair must be evaluated once.')
        emb = np.stack([r[emb_key] for r in items])
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        issame = np.array([r['pair_label'] for r in items[0::2]])
        accs, thr = verification_accuracy(emb[0::2], emb[1::2], issame,
                                          self.n_folds)
        tar = tar_at_far(emb[0::2], emb[1::2], issame, self.far_target,
                         self.n_folds)
        key = f'{prefix}{name}'
        out = {
            f'{key}/accuracy': float(accs.mean() * 100),
            f'{key}/accuracy_std': float(accs.std() * 100),
            f'{key}/best_threshold': thr,
            f'{key}/tar@far{self.far_target:.0e}'.replace('e-0', 'e-'):
            tar * 100,
            f'{key}/xnorm': float(np.mean([r[xnorm_key] for r in items])),
        }
        out.update(self._intervals(key, name, emb, issame))
        return out

    def _intervals(self, key: str, name: str, emb: np.ndarray,
                   issame: np.ndarray) -> Dict[str, float]:
        """Bootstrap CI keys of one set; its per-pair scores are dumped
        (student only: ``key == name``)."""
        # the same float32 squared distances as verification_accuracy
        dist = np.sum(np.square(np.subtract(emb[0::2], emb[1::2])), 1)
        if key == name:
            save_scores(self._scores_dir, name, 'verification', dist=dist,
                        issame=issame, n_folds=np.array(self.n_folds))
        if self.ci_level is None:
            return {}
        reps = verification_replicates(dist, issame, self.n_bootstrap,
                                       self.bootstrap_seed, name,
                                       self.n_folds)
        self._replicates[key] = reps
        lo, hi = percentile_ci(reps, self.ci_level)
        return {f'{key}/accuracy_ci_low': lo * 100,
                f'{key}/accuracy_ci_high': hi * 100}

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        metrics: Dict[str, float] = {}
        self._replicates = {}
        self._scores_dir = resolve_scores_dir(self.scores_dir,
                                              self.dump_scores)
        groups = self.group_by_set(results)
        for name in sorted(groups):
            metrics.update(self.evaluate_set(name, groups[name]))
            if all('teacher_embedding' in r for r in groups[name]):
                metrics.update(self.evaluate_set(
                    name, groups[name], 'teacher_embedding', 'teacher_xnorm',
                    prefix='teacher/'))
        mean_sets = list(groups) if self.mean_sets is None else [
            n for n in self.mean_sets if n in groups]
        if self.mean_sets is not None and groups and \
                len(mean_sets) != len(self.mean_sets):
            missing = sorted(set(self.mean_sets) - set(groups))
            raise ValueError(
                f'VerificationMetric.mean_sets names sets that were not '
                f'evaluated: {missing}; evaluated sets: {sorted(groups)}. '
                'Fix `mean_sets` in the evaluator config.')
        if mean_sets:
            metrics['mean/accuracy'] = float(np.mean(
                [metrics[f'{n}/accuracy'] for n in mean_sets]))
            save_mean_sets(self._scores_dir, mean_sets)
            if self.ci_level is not None:
                lo, hi = percentile_ci(
                    np.mean([self._replicates[n] for n in mean_sets], 0),
                    self.ci_level)
                metrics['mean/accuracy_ci_low'] = lo * 100
                metrics['mean/accuracy_ci_high'] = hi * 100
        logger = MMLogger.get_current_instance()
        for name in sorted(groups):
            logger.info(
                f'{name}: accuracy {metrics[f"{name}/accuracy"]:.2f} ± '
                f'{metrics[f"{name}/accuracy_std"]:.2f}' + (
                    f' (95% CI [{metrics[f"{name}/accuracy_ci_low"]:.2f}, '
                    f'{metrics[f"{name}/accuracy_ci_high"]:.2f}])'.replace(
                        '95', f'{self.ci_level * 100:g}')
                    if self.ci_level is not None else '') +
                f' ({len(groups[name]) // 2} pairs)')
        return metrics

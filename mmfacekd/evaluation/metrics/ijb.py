"""IJB-B / IJB-C 1:1 template verification metric."""
import json
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.logging import MMLogger

from mmfacekd.registry import METRICS

from ..functional.bootstrap import (
    percentile_ci,
    tpr_at_fpr_replicates,
)
from ..functional.identification import fpr_key
from ..functional.ijb import (
    DEFAULT_FPRS,
    roc_curve,
    score_pairs,
    template_pooling,
    tpr_at_fpr,
)
from .scores import BootstrapMetric, resolve_scores_dir, save_scores

__all__ = ['IJBMetric', 'read_pair_file']


def read_pair_file(path: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``<template1> <template2> <label>`` lines (insightface's
    ``*_template_pair_label.txt``) into three int arrays."""
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path}: IJB pair file not found; the IJBDataset reads '
            "the bundle's meta/<name>_template_pair_label.txt.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)  # empty: below
            arr = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except ValueError as e:  # also UnicodeDecodeError; locate the line
        with open(path, 'rb') as f:
            for i, raw in enumerate(f, 1):
                line = raw.decode('utf-8', 'replace')
                fields = line.split('#')[0].split()
                if fields and (len(fields) != 3 or not all(
                        _is_int64(x) for x in fields)):
                    raise ValueError(
                        f'{path}, line {i}: expected "<template1> '
                        f'<template2> <label>" (3 integers), got '
                        f'{line.strip()[:80]!r}.') from e
        raise ValueError(
            f'{path}: not a list of "<template1> <template2> <label>" '
            f'lines ({type(e).__name__}: {e}); fix or re-download the '
            'pair file.') from e
    if arr.size == 0:
        raise ValueError(f'{path}: no pairs; the IJB pair file lists '
                         '"<template1> <template2> <label>" lines.')
    if arr.shape[1] != 3:
        raise ValueError(f'{path}, line 1: expected 3 fields per line '
                         f'(template1 template2 label), got {arr.shape[1]}.')
    return arr[:, 0], arr[:, 1], arr[:, 2]


def _is_int64(text: str) -> bool:
    try:
        return -2**63 <= int(text) < 2**63
    except ValueError:
        return False


@METRICS.register_module()
class IJBMetric(BootstrapMetric):
    """TPR@FPR of IJB-B / IJB-C 1:1 template verification.

    Consumes the images of one IJB set (``eval_protocol == 'ijb'`` and
    ``set_name``), one result per image (distributed collection keeps every
    image; they are re-ordered by ``sample_idx``), then runs the protocol of
    :mod:`mmfacekd.evaluation.functional.ijb`: flip-summed features (the
    model's ``pred_embedding``), L2-normalize, × face score, media mean,
    template sum, L2-normalize, cosine per pair, ROC, TPR at the point
    nearest each FPR.

    The pair list (``meta/<name>_template_pair_label.txt``) comes from the
    dataset: :class:`~mmfacekd.datasets.IJBDataset` puts its path in every
    sample's meta (``pair_file``), so the config names the bundle once.

    Reported keys (%): ``<set>/tpr@fpr1e-6`` … ``<set>/tpr@fpr1e-1``; with
    ``ci_level`` also ``<set>/tpr@fpr1e-4_ci_low`` / ``_ci_high``: the
    percentile interval of ``n_bootstrap`` seeded bootstrap replicates
    (genuine and impostor pairs resampled separately, the ROC rule rerun on
    each, see :mod:`mmfacekd.evaluation.functional.bootstrap`; ~4 s for
    1000 replicates of 100k pairs; ~0.6 s per replicate at IJB-C's 15.7M
    pairs, so use ``n_bootstrap=200`` or ``ci_level=None`` there).
    Unless ``dump_scores=False`` the pair scores and labels go to
    ``<scores_dir>/<set>.npz`` (default ``<work_dir>/scores``).
    The TPR table goes to the log; with ``out_dir`` (default: the current
    run's log directory) also ``<set>_ijb.json`` and the ROC curve
    ``<set>_roc.png`` (log-x FPR).

    Args:
        pair_file (str, optional): Deprecated (the dataset provides it):
            ``meta/<name>_template_pair_label.txt``, absolute or relative to
            ``data_root``; overrides the dataset's when given.
        set_name (str): The IJBDataset's set name. Defaults to 'ijbc'.
        data_root (str, optional): Prefix of the deprecated ``pair_file``.
        fprs (Sequence[float]): FPR targets. Defaults to 1e-6 … 1e-1.
        use_norm_score (bool): L2-normalize image features before
            weighting. Defaults to True.
        use_detector_score (bool): Weight by face score. Defaults to True.
        out_dir (str, optional): Where the JSON and PNG go.
        ci_level (float, optional): Interval level; None: no intervals.
            Defaults to 0.95.
        n_bootstrap (int): Replicates. Defaults to 1000.
        bootstrap_seed (int): Seed (with the set name). Defaults to 0.
        dump_scores (bool): Write the pair scores. Defaults to True.
        scores_dir (str, optional): Defaults to ``<work_dir>/scores``.
        **kwargs: These five, ``collect_device`` and ``prefix``, passed
            as keywords to :class:`~.scores.BootstrapMetric`.
    """

    def __init__(self, pair_file: Optional[str] = None,
                 set_name: str = 'ijbc',
                 data_root: Optional[str] = None,
                 fprs: Sequence[float] = DEFAULT_FPRS,
                 use_norm_score: bool = True,
                 use_detector_score: bool = True,
                 out_dir: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if pair_file is not None:
            warnings.warn(
                'IJBMetric(pair_file=...) is deprecated: the IJBDataset '
                'provides its pair file (sample meta `pair_file`); drop '
                '`pair_file`/`data_root` from the metric config.',
                DeprecationWarning, stacklevel=2)
            pair_file = osp.join(data_root, pair_file) if data_root \
                else pair_file
        self.pair_file = pair_file
        self.set_name = set_name
        self.fprs = tuple(fprs)
        self.use_norm_score = use_norm_score
        self.use_detector_score = use_detector_score
        self.out_dir = out_dir

    def process(self, data_batch, data_samples: Sequence) -> None:
        for ds in data_samples:
            get = ds.get
            if get('eval_protocol', None) != 'ijb' or \
                    get('set_name') != self.set_name:
                continue
            emb = get('pred_embedding')
            self.results.append(dict(
                sample_idx=int(get('sample_idx')),
                embedding=np.asarray(emb.numpy() if hasattr(emb, 'numpy')
                                     else emb, np.float32),
                face_score=float(get('face_score')),
                template_id=int(get('template_id')),
                media_id=int(get('media_id')),
                pair_file=get('pair_file', None)))

    def _pool(self, results: List[dict]):
        results = sorted(results, key=lambda r: r['sample_idx'])
        idx = np.array([r['sample_idx'] for r in results])
        if len(idx) == 0 or not np.array_equal(idx, np.arange(len(idx))):
            raise ValueError(
                f'IJB set {self.set_name!r}: got image indices that are not '
                f'exactly 0..N-1 ({len(results)} results); every image of '
                'the set must be evaluated exactly once (check the sampler '
                'and that the dataset set_name matches IJBMetric.set_name).')
        feats = np.stack([r['embedding'] for r in results])
        return template_pooling(
            feats, np.array([r['face_score'] for r in results]),
            np.array([r['template_id'] for r in results]),
            np.array([r['media_id'] for r in results]),
            self.use_norm_score, self.use_detector_score)

    def _pair_file(self, results: List[dict]) -> str:
        """The deprecated argument, else the dataset's (sample meta, then
        ``dataset_meta``)."""
        if self.pair_file is not None:
            return self.pair_file
        files = {r.get('pair_file') for r in results} - {None}
        if not files and self.dataset_meta:
            files = {self.dataset_meta.get('pair_file')} - {None}
        if len(files) != 1:
            raise ValueError(
                f'IJB set {self.set_name!r}: '
                + ('no pair file: the IJBDataset found no '
                   'meta/<name>_template_pair_label.txt in its data_root'
                   if not files else f'several pair files {sorted(files)}')
                + '.')
        return files.pop()

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        templates, tfeats = self._pool(results)
        pair_file = self._pair_file(results)
        t1, t2, labels = read_pair_file(pair_file)
        try:
            scores = score_pairs(templates, tfeats, t1, t2)
        except KeyError as e:
            i = e.args[0]
            raise ValueError(
                f'{pair_file}, line {i + 1}: pair ({t1[i]}, {t2[i]}) '
                'names a template without any evaluated image (not in the '
                "face_tid_mid file, or all its images missing); fix the pair "
                'file or the dataset.') from None
        fpr, tpr, _ = roc_curve(scores, labels)
        table = tpr_at_fpr(fpr, tpr, self.fprs)
        name = self.set_name
        metrics = {f'{name}/tpr@fpr{fpr_key(f)}': v * 100
                   for f, v in table.items()}
        save_scores(resolve_scores_dir(self.scores_dir, self.dump_scores),
                    name, 'ijb', scores=scores, labels=labels.astype(bool),
                    fprs=np.array(self.fprs))
        ci_lines = ''
        if self.ci_level is not None:
            reps = tpr_at_fpr_replicates(scores, labels, self.fprs,
                                         self.n_bootstrap,
                                         self.bootstrap_seed, name)
            lo, hi = percentile_ci(reps, self.ci_level)
            for j, f in enumerate(self.fprs):
                metrics[f'{name}/tpr@fpr{fpr_key(f)}_ci_low'] = \
                    float(lo[j] * 100)
                metrics[f'{name}/tpr@fpr{fpr_key(f)}_ci_high'] = \
                    float(hi[j] * 100)
            ci_lines = (f'\n  {self.ci_level * 100:g}% CI ' + ' '.join(
                f'[{lo[j] * 100:.2f}, {hi[j] * 100:.2f}]'
                for j in range(len(self.fprs))))
        logger = MMLogger.get_current_instance()
        logger.info(
            f'{name}: {len(results)} images, {len(templates)} templates, '
            f'{len(labels)} pairs ({int(labels.sum())} genuine)\n'
            '  FPR  ' + ' '.join(f'{fpr_key(f):>7}' for f in self.fprs) +
            '\n  TPR% ' + ' '.join(f'{table[f] * 100:7.2f}'
                                   for f in self.fprs) + ci_lines)
        self._save(name, metrics, fpr, tpr, len(templates), len(labels),
                   int(labels.sum()), logger)
        return metrics

    def _save(self, name, metrics, fpr, tpr, n_templates, n_pairs, n_pos,
              logger) -> None:
        out_dir = self.out_dir
        if out_dir is None:
            log_file = getattr(logger, 'log_file', None)
            out_dir = osp.dirname(log_file) if log_file else None
        if not out_dir:
            return
        os.makedirs(out_dir, exist_ok=True)
        with open(osp.join(out_dir, f'{name}_ijb.json'), 'w') as f:
            json.dump(dict(set_name=name, templates=n_templates,
                           pairs=n_pairs, genuine_pairs=n_pos,
                           use_norm_score=self.use_norm_score,
                           use_detector_score=self.use_detector_score,
                           metrics=metrics), f, indent=1)
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 4))
        keep = fpr > 0
        ax.plot(fpr[keep], tpr[keep] * 100)
        ax.set_xscale('log')
        ax.set_xlim(max(1e-6, fpr[keep].min() if keep.any() else 1e-6), 1)
        ax.set_xlabel('False Positive Rate')
        ax.set_ylabel('True Positive Rate (%)')
        ax.set_title(f'{name} 1:1 ROC')
        ax.grid(True, which='both', alpha=0.3)
        fig.tight_layout()
        fig.savefig(osp.join(out_dir, f'{name}_roc.png'), dpi=100)
        plt.close(fig)

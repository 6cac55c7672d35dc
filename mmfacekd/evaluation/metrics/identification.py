"""1:N identification against distractors (MegaFace challenge 1 style)."""
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from mmfacekd.registry import METRICS
from ..functional.identification import fpr_key, identification_metrics

ROLES = ('probe', 'distractor')


def _to_numpy(x) -> np.ndarray:
    return np.asarray(x.numpy() if hasattr(x, 'numpy') else x,
                      dtype=np.float32)


@METRICS.register_module()
class IdentificationMetric(BaseMetric):
    """Rank-1 identification and TPR at FPR over probes + distractors.

    Consumes the samples of a (possibly mixed) test set whose
    ``eval_protocol`` is ``'identification'`` (see
    :class:`IdentificationDataset`); each carries ``set_name``,
    ``sample_idx``, ``role`` (``'probe'`` or ``'distractor'``) and, for
    probes, ``identity``. One result per image is kept (its flip-summed
    ``pred_embedding``, L2-normalized before scoring), so distributed
    collection works whatever the batch boundaries. Per set the image
    indices must be exactly ``0 .. n-1``, each once.

    The math is :func:`mmfacekd.evaluation.functional.identification_metrics`
    (MegaFace challenge 1 rules; ties count as failures; the FPR threshold
    is the ``(floor(f * n) + 1)``-th highest impostor score, accept iff
    ``score > t``; chunked over distractors so 1M distractors fit).

    Reported per set, in %: ``<set>/rank1`` (and ``rank<r>`` for the other
    ``ranks``), ``<set>/tpr@fpr1e-6`` (one key per FPR, spelled like
    :class:`VerificationMetric`'s ``tar@far1e-3``). With the MegaFace config
    (``set_name='megaface'``) the keys are ``megaface/rank1`` and
    ``megaface/tpr@fpr1e-6``. When every result also has a
    ``teacher_embedding`` (a distiller with ``eval_teacher=True``), the same
    keys prefixed ``teacher/`` are added.

    Args:
        set_names (str | Sequence[str], optional): only these sets (others
            are ignored); None takes every identification set.
        fprs (Sequence[float]): target FPRs. Defaults to ``(1e-6,)``.
        ranks (Sequence[int]): identification ranks. Defaults to ``(1,)``.
        chunk (int): distractors scored at once (memory ``P x chunk``).
        device (str, optional): device for the score blocks (``'cuda'``).
    """
    default_prefix: Optional[str] = None

    def __init__(self,
                 set_names: Union[str, Sequence[str], None] = None,
                 fprs: Sequence[float] = (1e-6, ),
                 ranks: Sequence[int] = (1, ),
                 chunk: int = 4096,
                 device: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(set_names, str):
            set_names = (set_names, )
        self.set_names = None if set_names is None else tuple(set_names)
        self.fprs = tuple(float(f) for f in fprs)
        self.ranks = tuple(int(r) for r in ranks)
        self.chunk = int(chunk)
        self.device = device

    def process(self, data_batch, data_samples: Sequence) -> None:
        for ds in data_samples:
            get = ds.get
            if get('eval_protocol', None) != 'identification':
                continue
            name = get('set_name')
            if self.set_names is not None and name not in self.set_names:
                continue
            role = get('role')
            result = dict(set_name=name, sample_idx=int(get('sample_idx')),
                          role=role,
                          identity=get('identity', None),
                          embedding=_to_numpy(get('pred_embedding')))
            if get('teacher_embedding', None) is not None:
                result['teacher_embedding'] = _to_numpy(
                    get('teacher_embedding'))
            self.results.append(result)

    def _check(self, name: str, items: List[dict]) -> None:
        idx = np.array([r['sample_idx'] for r in items])
        if not np.array_equal(idx, np.arange(len(items))):
            uniq, counts = np.unique(idx, return_counts=True)
            dup = uniq[counts > 1][:5].tolist()
            raise ValueError(
                f'Identification set {name!r}: image indices are not exactly '
                f'0..n-1 once each ({len(items)} results, max index '
                f'{idx.max()}, duplicated {dup}); every probe and distractor '
                'image must be evaluated exactly once.')
        bad = [r['sample_idx'] for r in items if r['role'] not in ROLES]
        if bad:
            raise ValueError(
                f'Identification set {name!r}: image {bad[0]} has role '
                f'{items[bad[0]]["role"]!r}; expected one of {ROLES}.')
        bad = [r['sample_idx'] for r in items
               if r['role'] == 'probe' and r['identity'] is None]
        if bad:
            raise ValueError(
                f'Identification set {name!r}: probe image {bad[0]} has no '
                '`identity`; keep `identity` in PackFaceInputs.meta_keys.')

    def evaluate_set(self, name: str, items: List[dict],
                     emb_key: str = 'embedding',
                     prefix: str = '') -> Dict[str, float]:
        items = sorted(items, key=lambda r: r['sample_idx'])
        self._check(name, items)
        probes = [r for r in items if r['role'] == 'probe']
        dis = [r for r in items if r['role'] == 'distractor']
        if not probes or not dis:
            raise ValueError(
                f'Identification set {name!r}: {len(probes)} probe and '
                f'{len(dis)} distractor images; both are needed.')
        out = identification_metrics(
            np.stack([r[emb_key] for r in probes]),
            np.array([r['identity'] for r in probes]),
            np.stack([r[emb_key] for r in dis]), fprs=self.fprs,
            ranks=self.ranks, chunk=self.chunk, device=self.device)
        key = f'{prefix}{name}'
        metrics = {f'{key}/rank{r}': out[f'rank{r}'] * 100
                   for r in self.ranks}
        for f in self.fprs:
            metrics[f'{key}/tpr@fpr{fpr_key(f)}'] = \
                out[f'tpr@fpr{fpr_key(f)}'] * 100
        self._last_counts = out
        return metrics

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        groups = defaultdict(list)
        for r in results:
            groups[r['set_name']].append(r)
        metrics: Dict[str, float] = {}
        logger = MMLogger.get_current_instance()
        for name in sorted(groups):
            metrics.update(self.evaluate_set(name, groups[name]))
            c = self._last_counts
            tprs = ', '.join(
                f'TPR@FPR={fpr_key(f)} '
                f'{metrics[f"{name}/tpr@fpr{fpr_key(f)}"]:.2f}'
                for f in self.fprs)
            ranks = ', '.join(f'rank-{r} {metrics[f"{name}/rank{r}"]:.2f}'
                              for r in self.ranks)
            logger.info(
                f'{name}: {ranks}, {tprs} ({c["num_probes"]} probes of '
                f'{c["num_identities"]} identities, {c["num_distractors"]} '
                f'distractors, {c["num_rank_pairs"]} probe-gallery pairs)')
            if all('teacher_embedding' in r for r in groups[name]):
                metrics.update(self.evaluate_set(
                    name, groups[name], 'teacher_embedding',
                    prefix='teacher/'))
        return metrics

"""1:N identification against distractors (MegaFace challenge 1 style)."""
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.logging import MMLogger

from mmfacekd.registry import METRICS

from ..functional.bootstrap import (
    cluster_mean_replicates,
    identification_tpr_replicates,
    percentile_ci,
)
from ..functional.identification import (
    MAX_TOPK,
    fpr_key,
    identification_metrics,
    num_false_accepts_allowed,
    same_identity_pairs,
)
from .scores import BootstrapMetric, resolve_scores_dir, save_scores

ROLES = ('probe', 'distractor')


def _to_numpy(x) -> np.ndarray:
    return np.asarray(x.numpy() if hasattr(x, 'numpy') else x,
                      dtype=np.float32)


def probe_level_scores(probe_feats: np.ndarray, probe_ids: np.ndarray,
                       distractor_feats: np.ndarray, r_max: int, k_imp: int,
                       chunk: int = 4096, device: Optional[str] = None
                       ) -> Dict[str, np.ndarray]:
    """Per-pair ranks and per-probe top impostor scores (for bootstraps).

    The same computation as
    :func:`~mmfacekd.evaluation.functional.identification_metrics`
    (L2-normalized float32 features, per-identity Gram matrices, distractors
    in blocks of ``chunk``), keeping what that function reduces away:

    Returns:
        dict: ``pair_probe`` / ``pair_rank`` — probe index and rank
        ``1 + #{d: s(p, d) >= s(p, g)}`` (capped at ``r_max + 1``) of every
        ordered same-identity pair, in that function's order;
        ``genuine_scores`` / ``genuine_pairs`` — the unordered pairs;
        ``top_impostors`` ``(P, k)`` — each probe's ``k = min(k_imp, N)``
        highest distractor scores.
    """
    def norm(x):
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)

    probes, dis = norm(probe_feats), norm(distractor_feats)
    dev = torch.device(device) if device else torch.device('cpu')
    pairs = same_identity_pairs(probes, np.asarray(probe_ids), device)
    rows, scores = pairs['rows'], pairs['scores']
    k = max(min(int(k_imp), len(dis)), min(int(r_max), len(dis)))
    top = None
    p_dev = probes.to(dev)
    for s in range(0, len(dis), chunk):
        block = p_dev @ dis[s:s + chunk].to(dev).T
        v = block if top is None else torch.cat([top, block], 1)
        top = torch.topk(v, min(k, v.shape[1]), dim=1).values
    top = top.cpu()
    r = min(int(r_max), top.shape[1])
    rank = 1 + (top[rows, :r] >= scores[:, None]).sum(1)
    return dict(pair_probe=rows.numpy(), pair_rank=rank.numpy(),
                genuine_pairs=pairs['pairs'].numpy(),
                genuine_scores=pairs['pair_scores'].numpy(),
                top_impostors=top.numpy())


@METRICS.register_module()
class IdentificationMetric(BootstrapMetric):
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
    ``teacher_embedding`` (a distiller with ``TeacherEvalHook``), the same
    keys prefixed ``teacher/`` are added.

    Confidence intervals (``ci_level`` not None): ``<set>/rank1_ci_low`` /
    ``_ci_high`` and ``<set>/tpr@fpr1e-6_ci_low`` / ``_ci_high`` (%), the
    percentile intervals of ``n_bootstrap`` seeded bootstrap replicates that
    resample probes (a probe brings its (probe, gallery) pairs and its
    impostor scores; see :mod:`mmfacekd.evaluation.functional.bootstrap`).
    They need a second pass over the distractors
    (:func:`probe_level_scores`), which keeps each probe's
    ``floor(max(fprs) * P * N) + 1`` highest distractor scores. Unless
    ``dump_scores=False`` the per-pair ranks go to
    ``<scores_dir>/<set>.npz`` (default ``<work_dir>/scores``).

    Args:
        set_names (str | Sequence[str], optional): only these sets (others
            are ignored); None takes every identification set.
        fprs (Sequence[float]): target FPRs. Defaults to ``(1e-6,)``.
        ranks (Sequence[int]): identification ranks. Defaults to ``(1,)``.
        chunk (int): distractors scored at once (memory ``P x chunk``).
        device (str, optional): device for the score blocks (``'cuda'``).
        ci_level (float, optional): Interval level; None: no intervals.
            Defaults to 0.95.
        n_bootstrap (int): Replicates. Defaults to 1000.
        bootstrap_seed (int): Seed (with the set name). Defaults to 0.
        dump_scores (bool): Write the per-pair ranks. Defaults to True.
        scores_dir (str, optional): Defaults to ``<work_dir>/scores``.
        **kwargs: These five, ``collect_device`` and ``prefix``, passed
            as keywords to :class:`~.scores.BootstrapMetric`.
    """

    def __init__(self,
                 set_names: Union[str, Sequence[str], None] = None,
                 fprs: Sequence[float] = (1e-6, ),
                 ranks: Sequence[int] = (1, ),
                 chunk: int = 4096,
                 device: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
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
        metrics.update(self._intervals(
            key, name, np.stack([r[emb_key] for r in probes]),
            np.array([r['identity'] for r in probes]),
            np.stack([r[emb_key] for r in dis]), metrics))
        return metrics

    def _intervals(self, key: str, name: str, probe_feats: np.ndarray,
                   probe_ids: np.ndarray, dis_feats: np.ndarray,
                   metrics: Dict[str, float]) -> Dict[str, float]:
        """CI keys of one set; the per-pair ranks are dumped for the model
        itself (``key == name``), not for the teacher."""
        scores_dir = resolve_scores_dir(self.scores_dir, self.dump_scores) \
            if key == name else None
        if self.ci_level is None and scores_dir is None:
            return {}
        n_imp = len(probe_feats) * len(dis_feats)
        k_imp = 0
        if self.ci_level is not None and self.fprs:
            k_imp = max(num_false_accepts_allowed(f, n_imp) + 1
                        for f in self.fprs)
            if k_imp * len(probe_feats) > MAX_TOPK:
                MMLogger.get_current_instance().warning(
                    f'{name}: no TPR@FPR interval (it needs each probe\'s '
                    f'{k_imp} highest impostor scores).')
                k_imp = 0
        r_max = max(self.ranks)
        lvl = probe_level_scores(probe_feats, probe_ids, dis_feats, r_max,
                                 k_imp, self.chunk, self.device)
        save_scores(scores_dir, name, 'identification',
                    pair_probe=lvl['pair_probe'], pair_rank=lvl['pair_rank'],
                    ranks=np.array(self.ranks))
        ci: Dict[str, float] = {}
        if self.ci_level is None:
            return ci
        for r in self.ranks:
            hits = lvl['pair_rank'] <= r
            if abs(hits.mean() * 100 - metrics[f'{key}/rank{r}']) > 1e-6:
                MMLogger.get_current_instance().warning(
                    f'{key}: per-pair rank-{r} {hits.mean() * 100:.4f} != '
                    f'{metrics[f"{key}/rank{r}"]:.4f} (float round-off '
                    'between the two passes); the interval is around the '
                    'former.')
            reps = cluster_mean_replicates(hits, lvl['pair_probe'],
                                           self.n_bootstrap,
                                           self.bootstrap_seed, name)
            lo, hi = percentile_ci(reps, self.ci_level)
            ci[f'{key}/rank{r}_ci_low'] = lo * 100
            ci[f'{key}/rank{r}_ci_high'] = hi * 100
        if k_imp:
            reps = identification_tpr_replicates(
                lvl['genuine_scores'], lvl['genuine_pairs'],
                lvl['top_impostors'], len(dis_feats), len(probe_feats),
                self.fprs, self.n_bootstrap, self.bootstrap_seed, name)
            lo, hi = percentile_ci(reps, self.ci_level)
            for j, f in enumerate(self.fprs):
                ci[f'{key}/tpr@fpr{fpr_key(f)}_ci_low'] = float(lo[j] * 100)
                ci[f'{key}/tpr@fpr{fpr_key(f)}_ci_high'] = float(hi[j] * 100)
        return ci

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

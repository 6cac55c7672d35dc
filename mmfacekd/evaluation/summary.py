"""One summary row per evaluated model, in the papers' column order.

GKD Table 5 reports, left to right: IJB-C TPR@FPR=1e-4 / 1e-5, IJB-B
TPR@FPR=1e-4 / 1e-5, MegaFace challenge-1 Rank-1 identification / TPR@FPR=1e-6
verification, then LFW, CFP-FP, CPLFW, AgeDB-30, CALFW accuracy. Metrics of
any other set (synthetic sets, masked M-M / M-N variants, other FPRs) follow
in a stable order, so one table can hold paper sets and demo sets alike.

Cells are ``value [low, high]``: the metric and its 95 % bootstrap interval
(``<key>_ci_low`` / ``<key>_ci_high``, reported by the metrics). Tables of
several runs can add, per distilled row, paired columns ``Δ <metric> vs
student [low, high]`` on the headline metrics (mean verification accuracy,
IJB TPR@FPR=1e-4, 1:N Rank-1), and an across-seed table shows
``mean ± std``.
"""
import json
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ['PAPER_COLUMNS', 'summary_columns', 'summary_markdown',
           'seed_summary_markdown', 'format_value', 'format_delta',
           'delta_columns', 'is_headline', 'write_summary']

# (column title, metric key) — the order of GKD Table 5.
PAPER_COLUMNS: Tuple[Tuple[str, str], ...] = (
    ('IJB-C 1e-4', 'ijbc/tpr@fpr1e-4'),
    ('IJB-C 1e-5', 'ijbc/tpr@fpr1e-5'),
    ('IJB-B 1e-4', 'ijbb/tpr@fpr1e-4'),
    ('IJB-B 1e-5', 'ijbb/tpr@fpr1e-5'),
    ('MegaFace Id', 'megaface/rank1'),
    ('MegaFace Ver', 'megaface/tpr@fpr1e-6'),
    ('LFW', 'lfw/accuracy'),
    ('CFP-FP', 'cfp_fp/accuracy'),
    ('CPLFW', 'cplfw/accuracy'),
    ('AgeDB-30', 'agedb_30/accuracy'),
    ('CALFW', 'calfw/accuracy'),
)

# Headline metrics of sets that are not paper columns, by key suffix:
# verification accuracy, IJB TPR@FPR=1e-4/1e-5, 1:N Rank-1 and TPR@1e-6.
_EXTRA_SUFFIXES = ('/accuracy', '/tpr@fpr1e-4', '/tpr@fpr1e-5', '/rank1',
                   '/tpr@fpr1e-6')


def _is_extra(key: str, paper_keys: set) -> bool:
    if key in paper_keys or key.startswith(('teacher/', 'mean/')):
        return False
    return key.endswith(_EXTRA_SUFFIXES)


def _extra_order(key: str) -> Tuple[int, str, int]:
    set_name, _, metric = key.rpartition('/')
    base = re.sub(r'_(mm|mn)$', '', set_name)  # masked variants stay together
    return (0 if metric != 'accuracy' else 1, base + '/' + set_name,
            _EXTRA_SUFFIXES.index('/' + metric))


def summary_columns(metric_dicts: Sequence[Dict[str, float]],
                    include_missing_paper_columns: bool = False
                    ) -> List[Tuple[str, str]]:
    """Columns ``(title, key)`` for a table over ``metric_dicts``.

    Paper columns come first (only those some model has, unless
    ``include_missing_paper_columns``), then every other set's headline
    metric (IJB/identification-style before verification sets, masked
    variants next to their base set), then ``mean`` of the verification sets.
    """
    present = set().union(*[set(m) for m in metric_dicts]) if metric_dicts \
        else set()
    paper_keys = {k for _, k in PAPER_COLUMNS}
    cols = [(t, k) for t, k in PAPER_COLUMNS
            if include_missing_paper_columns or k in present]
    extras = sorted((k for k in present if _is_extra(k, paper_keys)),
                    key=_extra_order)
    cols += [(k, k) for k in extras]
    if 'mean/accuracy' in present:
        cols.append(('mean (verification)', 'mean/accuracy'))
    return cols


def format_value(metrics: Dict[str, float], key: str, digits: int = 2,
                 ci: bool = True) -> str:
    """``value [low, high]`` (the ``<key>_ci_low/_ci_high`` interval when
    the metric reported one), ``value`` without it, '–' if absent."""
    if key not in metrics or metrics[key] is None:
        return '–'
    cell = f'{metrics[key]:.{digits}f}'
    lo, hi = metrics.get(f'{key}_ci_low'), metrics.get(f'{key}_ci_high')
    if ci and lo is not None and hi is not None:
        cell += f' [{lo:.{digits}f}, {hi:.{digits}f}]'
    return cell


def format_delta(delta: Optional[Sequence[float]], digits: int = 2) -> str:
    """``+d [low, high]`` of a paired difference ``(d, low, high)``."""
    if delta is None:
        return '–'
    d, lo, hi = delta
    return f'{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]'


def is_headline(key: str) -> bool:
    """The metrics that get a paired ``Δ vs student`` column: mean
    verification accuracy, IJB TPR@FPR=1e-4, 1:N Rank-1."""
    return not key.startswith('teacher/') and (
        key == 'mean/accuracy' or key.endswith(('/tpr@fpr1e-4', '/rank1')))


def delta_columns(columns: Sequence[Tuple[str, str]],
                  deltas: Sequence[Optional[Dict[str, Sequence[float]]]],
                  baseline: str = 'student') -> List[Tuple[str, str]]:
    """``(title, key)`` of the Δ columns: headline columns some row has a
    paired difference for, in the table's column order."""
    have = set().union(*[set(d) for d in deltas if d]) if deltas else set()
    return [(f'Δ {t} vs {baseline}', k) for t, k in columns
            if is_headline(k) and k in have]


def summary_markdown(rows: Sequence[Tuple[str, Dict[str, float]]],
                     columns: Optional[List[Tuple[str, str]]] = None,
                     digits: int = 2,
                     deltas: Optional[Sequence[Optional[Dict]]] = None,
                     baseline: str = 'student',
                     lead: Optional[Sequence[Tuple[str, Sequence[str]]]]
                     = None) -> str:
    """A markdown table: one row per ``(name, metrics)``.

    Cells are ``value [low, high]`` (the metric's bootstrap interval, when
    it has one), '–' if absent. ``deltas`` (one dict per row, or None) adds
    the paired columns ``Δ <metric> vs <baseline>``: ``+d [low, high]``
    (percentage points, from
    :func:`mmfacekd.evaluation.metrics.scores.paired_comparison`). ``lead``
    are extra ``(title, cells)`` columns right after the name.
    """
    columns = columns or summary_columns([m for _, m in rows])
    dcols = delta_columns(columns, deltas or [], baseline)
    lead = list(lead or [])
    titles = [t for t, _ in lead] + [t for t, _ in columns] + \
        [t for t, _ in dcols]
    lines = ['| model | ' + ' | '.join(titles) + ' |',
             '|---|' + '---|' * len(titles)]
    for i, (name, metrics) in enumerate(rows):
        cells = [c[i] for _, c in lead]
        cells += [format_value(metrics, k, digits) for _, k in columns]
        d = (deltas[i] if deltas and i < len(deltas) else None) or {}
        cells += [format_delta(d.get(k), digits) for _, k in dcols]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _mean_std(values: Sequence[float], digits: int) -> str:
    v = np.asarray(values, np.float64)
    if len(v) == 1:
        return f'{v[0]:.{digits}f}'
    return f'{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}'


def seed_summary_markdown(
        groups: Sequence[Tuple[str, Sequence[Dict[str, float]],
                               Sequence[Optional[Dict]]]],
        columns: Optional[List[Tuple[str, str]]] = None, digits: int = 2,
        baseline: str = 'student') -> str:
    """Across-seed table: one row per method ``(name, [metrics per seed],
    [paired deltas per seed or None])``.

    A method run with several seeds shows ``mean ± std`` over its seeds
    (sample std, ddof 1) for every metric and for each paired ``Δ vs
    <baseline>`` (each seed's difference against the baseline run of the
    same seed); a single-seed method shows its value with its bootstrap
    interval and its paired difference with its interval. Column ``seeds``
    is the number of runs.
    """
    flat = [m for _, ms, _ in groups for m in ms]
    columns = columns or summary_columns(flat)
    dcols = delta_columns(columns, [d for _, _, ds in groups for d in ds],
                          baseline)
    titles = ['seeds'] + [t for t, _ in columns] + [t for t, _ in dcols]
    lines = ['| model | ' + ' | '.join(titles) + ' |',
             '|---|' + '---|' * len(titles)]
    for name, ms, ds in groups:
        cells = [str(len(ms))]
        for _, k in columns:
            vals = [m[k] for m in ms if m.get(k) is not None]
            if len(ms) == 1 or not vals:
                cells.append(format_value(ms[0], k, digits) if ms else '–')
            else:
                cells.append(_mean_std(vals, digits) + (
                    f' (n={len(vals)})' if len(vals) != len(ms) else ''))
        for _, k in dcols:
            vals = [d[k] for d in ds if d and k in d]
            if not vals:
                cells.append('–')
            elif len(ms) == 1:
                cells.append(format_delta(vals[0], digits))
            else:
                cells.append(_mean_std([v[0] for v in vals], digits))
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def write_summary(rows: Sequence[Tuple[str, Dict[str, float]]],
                  md_path: str, json_path: str) -> str:
    """Write the table as markdown and JSON (columns + rows, with the
    ``_ci_low``/``_ci_high`` of each column when present); return it."""
    columns = summary_columns([m for _, m in rows])
    table = summary_markdown(rows, columns)
    with open(md_path, 'w') as f:
        f.write(table + '\n')
    keys = [k2 for _, k in columns
            for k2 in (k, f'{k}_ci_low', f'{k}_ci_high')]
    with open(json_path, 'w') as f:
        json.dump(dict(columns=[dict(title=t, key=k) for t, k in columns],
                       rows=[dict(name=n, **{k: m.get(k) for k in keys
                                             if k in m or '_ci_' not in k})
                             for n, m in rows]), f, indent=1)
    return table

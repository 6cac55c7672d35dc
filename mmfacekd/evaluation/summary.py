"""One summary row per evaluated model, in the papers' column order.

GKD Table 5 reports, left to right: IJB-C TPR@FPR=1e-4 / 1e-5, IJB-B
TPR@FPR=1e-4 / 1e-5, MegaFace challenge-1 Rank-1 identification / TPR@FPR=1e-6
verification, then LFW, CFP-FP, CPLFW, AgeDB-30, CALFW accuracy. Metrics of
any other set (synthetic sets, masked M-M / M-N variants, other FPRs) follow
in a stable order, so one table can hold paper sets and demo sets alike.
"""
import json
import re
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ['PAPER_COLUMNS', 'summary_columns', 'summary_markdown',
           'write_summary']

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


def summary_markdown(rows: Sequence[Tuple[str, Dict[str, float]]],
                     columns: Optional[List[Tuple[str, str]]] = None,
                     digits: int = 2) -> str:
    """A markdown table: one row per ``(name, metrics)``; '–' if absent."""
    columns = columns or summary_columns([m for _, m in rows])
    lines = ['| model | ' + ' | '.join(t for t, _ in columns) + ' |',
             '|---|' + '---|' * len(columns)]
    for name, metrics in rows:
        cells = [f'{metrics[k]:.{digits}f}' if k in metrics else '–'
                 for _, k in columns]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def write_summary(rows: Sequence[Tuple[str, Dict[str, float]]],
                  md_path: str, json_path: str) -> str:
    """Write the table as markdown and JSON (columns + rows); return it."""
    columns = summary_columns([m for _, m in rows])
    table = summary_markdown(rows, columns)
    with open(md_path, 'w') as f:
        f.write(table + '\n')
    with open(json_path, 'w') as f:
        json.dump(dict(columns=[dict(title=t, key=k) for t, k in columns],
                       rows=[dict(name=n, **{k: m.get(k) for _, k in columns})
                             for n, m in rows]), f, indent=1)
    return table

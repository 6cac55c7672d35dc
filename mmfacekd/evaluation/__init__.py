from .metrics import *  # noqa: F401,F403
from .metrics.scores import load_scores, paired_comparison
from .summary import (
    PAPER_COLUMNS,
    delta_columns,
    format_delta,
    format_value,
    seed_summary_markdown,
    summary_columns,
    summary_markdown,
    write_summary,
)

__all__ = ['PAPER_COLUMNS', 'delta_columns', 'format_delta', 'format_value',
           'load_scores', 'paired_comparison', 'seed_summary_markdown',
           'summary_columns', 'summary_markdown', 'write_summary']

from .metrics import *  # noqa: F401,F403
from .summary import (PAPER_COLUMNS, summary_columns, summary_markdown,
                      write_summary)

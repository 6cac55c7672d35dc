"""The figure plumbing the plots share (no pyplot state: a bare
``Figure``, so tools and tests can draw without a display)."""
from typing import Optional, Tuple


def new_axes(size: Tuple[float, float]):
    """A fresh ``(Figure, Axes)`` of ``size`` inches."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=size)
    return fig, fig.add_subplot()


def finish(fig, ax, out: Optional[str], legend_loc: str,
           grid: str = 'major', dpi: int = 110):
    """Grid, legend, tight layout; save to ``out`` when given."""
    ax.grid(True, which=grid, alpha=0.3)
    ax.legend(fontsize=8, loc=legend_loc)
    fig.tight_layout()
    if out is not None:
        fig.savefig(out, dpi=dpi)
    return fig

"""Input checks that every rank runs together, so that a bad input on one
rank raises the same clear error on all ranks instead of a hang."""
from typing import List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from .dist_gather import get_world_size

__all__ = ['gather_ints', 'check_batch_across_ranks']


def gather_ints(values: Sequence[int],
                device: torch.device) -> List[List[int]]:
    """The ints ``values`` of every rank (rank order), one all-gather."""
    t = torch.tensor(list(values), dtype=torch.long, device=device)
    if get_world_size() == 1:
        return [t.tolist()]
    out = [torch.empty_like(t) for _ in range(get_world_size())]
    dist.all_gather(out, t)
    return [o.tolist() for o in out]


def check_batch_across_ranks(who: str, rows: int,
                             labels: Optional[Tensor],
                             num_classes: int,
                             device: torch.device,
                             rows_field: str = 'batch size',
                             rows_fix: str = '') -> None:
    """Check that ``rows`` is the same on every rank and that every label is
    in ``[-1, num_classes)`` (``-1`` = ignored), on all ranks at once.

    Args:
        who (str): The module, named in the error.
        rows (int): The local number of rows (batch size).
        labels (Tensor, optional): Local labels.
        num_classes (int): The number of classes the labels index.
        device (torch.device): Device of the collective.
        rows_field (str): What ``rows`` is, named in the error.
        rows_fix (str): How to fix unequal ``rows``.

    Raises:
        ValueError: On every rank, naming the offending ranks.
    """
    lo, hi = 0, 0
    if labels is not None and labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
    table = gather_ints([rows, lo, hi], device)
    sizes = [t[0] for t in table]
    if len(set(sizes)) > 1:
        per_rank = ', '.join(f'rank {r}: {n}' for r, n in enumerate(sizes))
        raise ValueError(
            f'{who}: the {rows_field} differs across ranks ({per_rank}); '
            f'every rank must hold the same number of rows. {rows_fix}')
    bad = [(r, t[1], t[2]) for r, t in enumerate(table)
           if t[1] < -1 or t[2] >= num_classes]
    if bad:
        where = ', '.join(f'rank {r}: labels in [{a}, {b}]' for r, a, b in bad)
        raise ValueError(
            f'{who}: gt_label out of range on {where}; labels must be in '
            f'[0, {num_classes}) (or -1 to ignore). Set num_classes to the '
            'identity count of the training set (the `property` file of a '
            '.rec set) or fix the labels of the data set.')

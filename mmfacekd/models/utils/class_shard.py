"""Which classes a rank owns when a classifier is sharded over the world.

Layout rule (also used to merge and split shard files): with ``C`` classes
and ``W`` ranks, rank ``r`` owns the contiguous range ``[start_r, stop_r)``
of ``C // W`` classes, plus one more for the first ``C % W`` ranks, in rank
order; concatenating the shards in rank order gives the full head.
"""
from typing import List, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor

from .dist_gather import get_world_size

__all__ = ['ClassShard', 'class_shard', 'get_rank', 'column_offsets',
           'is_model_parallel']


def is_model_parallel(param: Tensor) -> bool:
    """Whether ``param`` is one rank's class shard (flagged
    ``model_parallel`` by ``PartialFCHead``): not replicated, so DDP leaves
    it alone and a global norm all-reduces it."""
    return bool(getattr(param, 'model_parallel', False))


class ClassShard(NamedTuple):
    """Rank ``rank`` of ``world_size`` owns classes ``[start, stop)``."""
    rank: int
    world_size: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def get_rank() -> int:
    """Rank in the default process group (0 without one)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def class_shard(num_classes: int, world_size: int, rank: int) -> ClassShard:
    """The classes rank ``rank`` owns (see the module docstring).

    Args:
        num_classes (int): Total number of classes ``C``.
        world_size (int): Number of ranks ``W``; needs ``C >= W``.
        rank (int): The rank, ``0 <= rank < W``.

    Returns:
        ClassShard: The range ``[start, stop)``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f'rank {rank} is not in a world of {world_size}')
    if num_classes < world_size:
        raise ValueError(
            f'cannot shard {num_classes} classes over {world_size} ranks: '
            'every rank needs at least one class; use fewer processes or '
            'the plain MarginHead')
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return ClassShard(rank, world_size, start,
                      start + base + (1 if rank < extra else 0))


def column_offsets(local_columns: int, device: torch.device) -> List[int]:
    """Global index of the first local column on every rank, plus the total.

    The columns of all ranks concatenated in rank order form the global
    columns (a class shard, or the sampled classes of one, see
    :class:`~mmfacekd.models.heads.PartialFCHead`). Returns ``W + 1`` ints:
    ``offsets[r]`` for each rank and ``offsets[W]`` = total columns.
    """
    if get_world_size() == 1:
        return [0, local_columns]
    n = torch.tensor([local_columns], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(n) for _ in range(get_world_size())]
    dist.all_gather(sizes, n)
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + int(s))
    return offsets


def local_global_index(local_columns: int, device: torch.device) -> Tensor:
    """(C_local, ) global column index of each local column."""
    offset = column_offsets(local_columns, device)[get_rank()]
    return torch.arange(offset, offset + local_columns, device=device)

"""Checkpoints of class-sharded heads that survive a change of world size.

MMEngine saves the state of rank 0 only, which for a
:class:`PartialFCHead` is one shard of the head and of its optimizer
momentum. :func:`gather_sharded_state` (a collective: every rank calls it)
collects the full ``(C, D)`` weight and momentum of every sharded head on
rank 0; :func:`write_full_state` puts them into rank 0's checkpoint dict.
On load, :meth:`PartialFCHead._load_from_state_dict` keeps each rank's rows
of the full weight, and :func:`shard_optimizer_state` does the same for the
momentum in the loaded checkpoint, so a run on N ranks resumes on any M.
:func:`check_sharded_checkpoint` refuses, before anything is loaded, a
checkpoint whose head is a shard or of another class count.
The negative-sampling state (``(seed, step)``, the same on every rank) is
written by :func:`write_sampling_states` under ``partial_fc_sampling`` and
restored by :func:`load_sampling_states`.
:class:`~mmfacekd.engine.hooks.ShardedHeadCheckpointHook` calls them.
"""
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor

from ..utils import get_world_size
from ..utils.class_shard import class_shard
from .partial_fc_head import PartialFCHead, head_mismatch_fix

__all__ = ['gather_sharded_state', 'write_full_state',
           'shard_optimizer_state', 'merge_shards',
           'check_sharded_checkpoint', 'write_sampling_states',
           'load_sampling_states', 'SAMPLING_KEY']

#: checkpoint key of the negative-sampling states
SAMPLING_KEY = 'partial_fc_sampling'


def _sharded_params(model: nn.Module) -> Iterator[Tuple[str, PartialFCHead]]:
    for name, module in model.named_modules():
        if isinstance(module, PartialFCHead):
            yield (f'{name}.weight' if name else 'weight'), module


def _param_index(optimizer: torch.optim.Optimizer) -> Dict[int, int]:
    """id(param) -> its index in ``optimizer.state_dict()['state']``."""
    params = [p for group in optimizer.param_groups for p in group['params']]
    return {id(p): i for i, p in enumerate(params)}


def _gather_rows(x: Tensor) -> Tensor:
    """Rows of every rank's ``x`` concatenated on rank 0 (rank order); other
    ranks get an empty tensor. Shards may differ in length by one row."""
    if get_world_size() == 1:
        return x.detach().clone()
    rows = torch.tensor([x.size(0)], device=x.device)
    sizes = [torch.zeros_like(rows) for _ in range(get_world_size())]
    dist.all_gather(sizes, rows)
    longest = int(max(sizes))
    padded = x.new_zeros((longest, ) + tuple(x.shape[1:]))
    padded[:x.size(0)] = x.detach()
    bufs = [torch.empty_like(padded) for _ in sizes] \
        if dist.get_rank() == 0 else None
    dist.gather(padded, bufs, dst=0)
    if dist.get_rank() != 0:
        return x.new_empty((0, ) + tuple(x.shape[1:]))
    return torch.cat([b[:int(n)] for b, n in zip(bufs, sizes)])


def _row_states(optimizer: torch.optim.Optimizer, param: Tensor) -> list:
    """Names of the optimizer states shaped like ``param`` (SGD's
    ``momentum_buffer``, Adam's ``exp_avg`` / ``exp_avg_sq``), sorted."""
    state = optimizer.state.get(param, {})
    return sorted(k for k, v in state.items()
                  if isinstance(v, Tensor) and v.shape == param.shape)


@torch.no_grad()
def gather_sharded_state(model: nn.Module,
                         optimizer: torch.optim.Optimizer = None
                         ) -> Dict[str, Dict[str, Tensor]]:
    """The full weight and optimizer states (those shaped like the shard,
    e.g. SGD's ``momentum_buffer``) of every sharded head, on rank 0; a
    collective.

    Returns:
        dict: ``{state_dict key: dict(weight=..., optim={name: tensor},
        index=<optimizer state index>)}`` (tensors on CPU; empty on the
        other ranks).
    """
    index = _param_index(optimizer) if optimizer is not None else {}
    out = {}
    for key, head in _sharded_params(model):
        entry = dict(weight=_gather_rows(head.weight).cpu())
        if id(head.weight) in index:
            names = _row_states(optimizer, head.weight)
            count = torch.tensor([len(names), -len(names)])
            if get_world_size() > 1:  # every rank has the same states
                dist.all_reduce(count, op=dist.ReduceOp.MAX)
            if int(count[0]) != -int(count[1]):
                raise RuntimeError(f'{key}: the ranks hold different '
                                   'optimizer states for their shards')
            state = optimizer.state.get(head.weight, {})
            entry['optim'] = {n: _gather_rows(state[n]).cpu() for n in names}
            entry['index'] = index[id(head.weight)]
        out[key] = entry
    return out


def write_full_state(checkpoint: dict,
                     gathered: Dict[str, Dict[str, Tensor]]) -> None:
    """Replace the shards in rank 0's ``checkpoint`` (MMEngine's dict with
    ``state_dict`` and ``optimizer``) by the gathered full tensors."""
    state = checkpoint.get('state_dict', {})
    optim = checkpoint.get('optimizer', {}).get('state', {})
    for key, entry in gathered.items():
        if key in state:  # e.g. a frozen teacher head is not saved
            state[key] = entry['weight']
        if entry.get('optim') and entry['index'] in optim:
            # a new dict: optimizer.state_dict() shares the live state dicts
            optim[entry['index']] = dict(optim[entry['index']],
                                         **entry['optim'])


def shard_optimizer_state(checkpoint: dict, model: nn.Module,
                          optimizer: torch.optim.Optimizer) -> None:
    """Keep this rank's rows of every full optimizer state of a sharded
    head in a loaded ``checkpoint`` (before the optimizer loads it)."""
    optim = checkpoint.get('optimizer', {}).get('state', {})
    index = _param_index(optimizer)
    for key, head in _sharded_params(model):
        idx = index.get(id(head.weight))
        if idx not in optim:
            continue
        shard, full = head.shard, (head.num_classes, head.in_channels)
        entry = dict(optim[idx])
        for name, value in entry.items():
            if not isinstance(value, Tensor) or value.dim() != 2:
                continue
            if tuple(value.shape) != full:
                raise ValueError(
                    f'{key}: the checkpoint holds the optimizer state '
                    f'{name!r} of shape {tuple(value.shape)}, not of the '
                    f'full head {full}; it was saved without '
                    'ShardedHeadCheckpointHook, so it cannot be resumed '
                    'safely. Resume without the optimizer state.')
            entry[name] = value[shard.start:shard.stop]
        optim[idx] = entry


def merge_shards(shards: Sequence[Tensor], num_classes: int,
                 names: Sequence[str] = ()) -> Tensor:
    """Concatenate per-rank ``(C_r, D)`` shards (rank order) into the full
    ``(C, D)`` head, checking the layout of
    :func:`~mmfacekd.models.utils.class_shard.class_shard` (also
    insightface's PartialFC layout: ``C // W`` rows each, one more on the
    first ``C % W`` ranks).

    Args:
        shards (Sequence[Tensor]): The shards in rank order.
        num_classes (int): ``C`` of the full head.
        names (Sequence[str]): Names of the shards (file names) for errors.

    Raises:
        ValueError: Naming the shard whose shape does not fit.
    """
    names = list(names) or [f'shard {r}' for r in range(len(shards))]
    world = len(shards)
    if world == 0:
        raise ValueError('merge_shards: no shards given')
    dims: List[int] = []
    for rank, (x, name) in enumerate(zip(shards, names)):
        expected = class_shard(num_classes, world, rank).size
        if x.dim() != 2 or x.size(0) != expected:
            raise ValueError(
                f'{name}: shape {tuple(x.shape)}, but rank {rank} of '
                f'{world} owns {expected} of {num_classes} classes; pass '
                'every shard of one run in rank order and its num_classes '
                '(a shard from another class count or world size)')
        dims.append(x.size(1))
    if len(set(dims)) > 1:
        raise ValueError(f'shards of different embedding sizes: {dims}')
    return torch.cat([x.detach() for x in shards])


def check_sharded_checkpoint(checkpoint: dict, model: nn.Module,
                             source: str = 'the checkpoint') -> None:
    """Refuse a ``checkpoint`` whose sharded-head weight is not the full
    ``(C, D)`` head (a shard, another class count or embedding size) before
    anything is loaded; no collective (every rank reads the same file and
    raises the same error).

    Raises:
        ValueError: Naming the rank, ``source``, the key and the fix.
    """
    state = checkpoint.get('state_dict', {})
    for key, head in _sharded_params(model):
        weight = state.get(key)
        full = (head.num_classes, head.in_channels)
        if weight is None or tuple(weight.shape) == full:
            continue
        shard = head.shard
        raise ValueError(
            f'rank {shard.rank} of {shard.world_size}: {source}: key '
            f'{key!r} has shape {tuple(weight.shape)}, the PartialFCHead '
            f'needs the full head {full}; '
            + head_mismatch_fix(tuple(weight.shape), *full))


def _sampled_heads(model: nn.Module) -> Iterator[Tuple[str, PartialFCHead]]:
    for name, module in model.named_modules():
        if isinstance(module, PartialFCHead) and module.sample_rate < 1:
            yield name, module


def write_sampling_states(checkpoint: dict, model: nn.Module) -> None:
    """Put the negative-sampling state of every sampling head into
    ``checkpoint[SAMPLING_KEY]`` (``{module name: dict(seed, step,
    world_size)}``, plain ints; the same on every rank, no collective)."""
    states = {name: head.sampling_state()
              for name, head in _sampled_heads(model)}
    if states:
        checkpoint[SAMPLING_KEY] = states


def load_sampling_states(checkpoint: dict, model: nn.Module) -> List[str]:
    """Restore the sampling states of ``checkpoint`` (a resumed run then
    draws the negatives of the uninterrupted run).

    Returns:
        list[str]: Notes for heads resumed on another world size (the
        shards differ: they draw the ``(seed, rank, step)`` negatives of the
        new layout) or missing from the checkpoint (they start at step 0).
    """
    saved: Optional[dict] = checkpoint.get(SAMPLING_KEY)
    notes = []
    for name, head in _sampled_heads(model):
        state = (saved or {}).get(name)
        if state is None:
            notes.append(f'{name}: no sampling state in the checkpoint '
                         '(saved before it was recorded): the negatives '
                         'restart at step 0')
            continue
        head.load_sampling_state(state)
        if int(state['world_size']) != head.shard.world_size:
            notes.append(
                f'{name}: saved on {state["world_size"]} ranks, resumed on '
                f'{head.shard.world_size}: the negatives continue at step '
                f'{state["step"]} on the new class layout (not the draws of '
                'the original run)')
    return notes

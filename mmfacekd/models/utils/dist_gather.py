"""Gather tensors across ranks for losses over the global batch.

Relational distillation losses (RKD, SP, CCKD, DarkRank, EKD, triplets) are
defined over pairs of samples; in a distributed run each rank only sees its
shard. :func:`gather_with_grad` concatenates the shards of all ranks (in rank
order) and lets the gradient flow back to the local shard.

Gradient convention: every rank computes the same loss ``L`` on the global
batch. The backward of :func:`gather_with_grad` sums the incoming gradient
over ranks (``all_reduce``) and keeps the local slice, i.e. it returns
``world_size * dL/dx_local``. DDP then averages parameter gradients over the
ranks, so the final gradients equal those of the single-process loss on the
concatenated batch.
"""
from typing import List

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ['get_world_size', 'gather_no_grad', 'gather_with_grad']


def get_world_size() -> int:
    """World size of the default process group (1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _gather_sizes(x: Tensor) -> List[int]:
    size = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def _gather(x: Tensor, sizes: List[int]) -> Tensor:
    """All-gather ``x`` along dim 0; shards may differ in length."""
    max_len = max(sizes)
    x = x.contiguous()
    if x.shape[0] < max_len:
        pad = x.new_zeros((max_len - x.shape[0], ) + tuple(x.shape[1:]))
        x = torch.cat([x, pad])
    bufs = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(bufs, x)
    return torch.cat([b[:n] for b, n in zip(bufs, sizes)])


def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` of every rank along dim 0 (rank order), no grad."""
    if get_world_size() == 1:
        return x
    with torch.no_grad():
        return _gather(x.detach(), _gather_sizes(x))


class _GatherWithGrad(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        sizes = _gather_sizes(x)
        rank = dist.get_rank()
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        return _gather(x, sizes)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start:ctx.stop]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` of every rank along dim 0 (rank order).

    The local shard keeps its autograd history (see the module docstring for
    the gradient convention). Without a process group (or with one rank) it
    returns ``x`` itself.
    """
    if get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)

"""Collectives for losses that every rank computes identically from
class-sharded logits (model parallelism over the classes).

Gradient convention: each rank holds some columns (classes) of every row of
the global batch, and all ranks compute the *same* scalar loss ``L`` from
sums reduced over the ranks. :func:`replicated_sum` is therefore an
all-reduce whose backward is the identity: ``dL/dx_local`` of each rank is
exactly the single-process gradient of its columns (no factor ``W``).
Maxima (softmax shifts) are constants for autograd.

:func:`gather_sharded_input` all-gathers the input of a model-parallel layer
(the embeddings of a sharded classifier); each rank's gradient w.r.t. the
gathered input only covers its own classes, the backward sums them over the
ranks and scales by ``W``, which is the convention of
:func:`~mmfacekd.models.utils.gather_with_grad`: DDP's averaging of the
backbone gradients then gives the single-process gradient.
"""
import torch
import torch.distributed as dist
from torch import Tensor

from .dist_gather import gather_with_grad, get_world_size

__all__ = [
    'replicated_sum', 'global_max', 'sharded_logsumexp', 'gather_sharded_input'
]


class _ReplicatedSum(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = x.contiguous().clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


class _ScaleGrad(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.factor, None


def replicated_sum(x: Tensor) -> Tensor:
    """Sum of ``x`` over the ranks; the backward passes the (replicated)
    gradient through unchanged. Identity without a process group."""
    if get_world_size() == 1:
        return x
    return _ReplicatedSum.apply(x)


@torch.no_grad()
def global_max(x: Tensor) -> Tensor:
    """Element-wise maximum of ``x`` over the ranks (no gradient)."""
    x = x.detach().contiguous().clone()
    if get_world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


def sharded_logsumexp(x: Tensor) -> Tensor:
    """``logsumexp`` over the columns of all ranks, per row of ``x`` (B, C_l).

    The shift is the global row maximum (an all-reduce of maxima, a
    constant), the sum of exponentials a :func:`replicated_sum`; the
    gradient w.r.t. ``x`` is the local part of the global softmax.
    """
    shift = global_max(x.amax(dim=1))
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    sumexp = replicated_sum((x - shift.unsqueeze(1)).exp().sum(dim=1))
    return shift + sumexp.log()


def gather_sharded_input(x: Tensor) -> Tensor:
    """All-gather ``x`` (rank order) as the input of a model-parallel layer;
    see the module docstring for the gradient. Identity with one rank."""
    world = get_world_size()
    if world == 1:
        return x
    return _ScaleGrad.apply(gather_with_grad(x), float(world))

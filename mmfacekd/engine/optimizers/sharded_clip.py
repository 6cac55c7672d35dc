"""Gradient clipping by global norm when some parameters are class shards
(``PartialFCHead``'s centres, flagged ``model_parallel``)."""
from typing import Iterable, Union

import torch
import torch.distributed as dist
from torch import Tensor

from mmfacekd.models.utils import get_world_size
from mmfacekd.models.utils.class_shard import is_model_parallel

__all__ = ['clip_grad_norm_sharded']


def _local_norm(params: list, norm_type: float, device) -> Tensor:
    """``sum |g|^p`` (``max |g|`` for p = inf) of ``params``' gradients."""
    if not params:
        return torch.zeros((), device=device)
    norms = torch.stack([torch.linalg.vector_norm(p.grad.detach(), norm_type)
                         .float() for p in params])
    return norms.max() if norm_type == float('inf') else \
        norms.pow(norm_type).sum()


def clip_grad_norm_sharded(parameters: Union[Tensor, Iterable[Tensor]],
                           max_norm: float,
                           norm_type: float = 2.0,
                           error_if_nonfinite: bool = False,
                           **kwargs) -> Tensor:
    """:func:`torch.nn.utils.clip_grad_norm_` over the parameters of all
    ranks: the norm of the whole model, the full class-centre matrix
    included, so every rank scales by the same factor.

    Replicated parameters (their gradients equal on every rank after DDP's
    all-reduce) count once; the ``model_parallel`` shards' ``sum |g|^p``
    (``max`` for ``p = inf``) is all-reduced. Clipping each rank's own
    norm instead would scale the replicated gradients differently per rank
    and let the DDP replicas drift apart. On one process this is
    ``clip_grad_norm_``. Other keyword arguments of ``clip_grad_norm_``
    (``foreach``) are accepted and ignored.

    Returns:
        Tensor: The total norm before clipping (as ``clip_grad_norm_``).
    """
    params = [parameters] if isinstance(parameters, Tensor) else \
        list(parameters)
    params = [p for p in params if p.grad is not None]
    norm_type = float(norm_type)
    if not params:
        return torch.zeros(())
    device = params[0].grad.device
    replicated = [p for p in params if not is_model_parallel(p)]
    shards = [p for p in params if is_model_parallel(p)]
    rep = _local_norm(replicated, norm_type, device)
    shard = _local_norm(shards, norm_type, device)
    if get_world_size() > 1:  # every rank holds the same kinds of params
        dist.all_reduce(shard, op=dist.ReduceOp.MAX
                        if norm_type == float('inf') else dist.ReduceOp.SUM)
    if norm_type == float('inf'):
        total = torch.maximum(rep, shard)
    else:
        total = (rep + shard).pow(1.0 / norm_type)
    if error_if_nonfinite and not torch.isfinite(total):
        raise RuntimeError(
            f'The total norm of order {norm_type} of the gradients (all '
            'ranks) is non-finite, so it cannot be clipped.')
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.detach().mul_(coef.to(p.grad.device, p.grad.dtype))
    return total

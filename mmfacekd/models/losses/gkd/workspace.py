"""Large CPU work buffers of :class:`GKDLoss`, reused across steps."""
from typing import Optional

import torch
from torch import Tensor


class Workspace:
    """Large CPU buffers reused across steps.

    Freshly allocated (B, C) buffers are ``mmap``-ed and page-faulted on
    first touch, which on CPU costs about as much as the arithmetic done
    with them. A buffer handed out by :meth:`take` only comes back through
    :meth:`give` once nothing uses it any more (after the backward pass that
    needed it, or at the end of a no-grad forward); concurrent or
    interleaved calls simply get fresh memory. Only buffers of the latest
    shape are kept.
    """

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._free = []

    def take(self,
             like: Tensor,
             dtype: Optional[torch.dtype] = None) -> Tensor:
        dtype = like.dtype if dtype is None else dtype
        for i, buf in enumerate(self._free):
            if buf.shape == like.shape and buf.dtype == dtype \
                    and buf.device == like.device:
                return self._free.pop(i)
        return torch.empty(like.shape, dtype=dtype, device=like.device)

    def give(self, *buffers: Optional[Tensor]) -> None:
        for buf in buffers:
            if buf is None:
                continue
            if self._free and self._free[0].shape != buf.shape:
                self._free = []
            if len(self._free) < self.capacity:
                self._free.append(buf)

    def __getstate__(self):  # never pickle or copy the buffers
        return {'capacity': self.capacity, '_free': []}

    def __deepcopy__(self, memo):
        return Workspace(self.capacity)

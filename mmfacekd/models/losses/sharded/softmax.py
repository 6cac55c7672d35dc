"""Softmax statistics of class-sharded logits: the shift is the maximum
over all ranks' columns, the sum of exponentials is summed over the ranks,
so the local exponentials are bit-identical to the single-process ones."""
import torch
from torch import Tensor

from ...utils.replicated import global_max, replicated_sum
from ..gkd.softmax import SoftmaxStats, softmax_stats

__all__ = ['sharded_softmax_stats']


def sharded_softmax_stats(logits: Tensor,
                          temperature: float = 1.0) -> SoftmaxStats:
    """:func:`~mmfacekd.models.losses.gkd.softmax_stats` of the local
    columns (B, C_l) with the global row maximum and the global ``sumexp``
    (no grad)."""
    with torch.no_grad():
        z = logits.detach()
        stats = softmax_stats(z, temperature, row_max=global_max(z.amax(1)))
        return SoftmaxStats(stats.shift, stats.exp,
                            replicated_sum(stats.sumexp))

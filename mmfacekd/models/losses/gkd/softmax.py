"""Row statistics of :math:`\\mathrm{softmax}(z / T)` shared by the GKD
selection (eq. 3) and the grouped KL terms (eq. 5, 6, 9), so that the
exponentials of each network are computed once per step."""
from typing import NamedTuple, Optional

import torch
from torch import Tensor


class SoftmaxStats(NamedTuple):
    """Row statistics of :math:`\\mathrm{softmax}(z / T)`.

    ``exp[b, c] = exp(z[b, c] / T - shift[b])`` with ``shift = max(z) / T``,
    ``sumexp = exp.sum(1)``, hence ``softmax = exp / sumexp`` and
    ``logsumexp(z / T) = shift + log(sumexp)``.
    """
    shift: Tensor
    exp: Tensor
    sumexp: Tensor


def softmax_stats(logits: Tensor,
                  temperature: float = 1.0,
                  out: Optional[Tensor] = None,
                  row_max: Optional[Tensor] = None) -> SoftmaxStats:
    """Compute :class:`SoftmaxStats` of ``logits / temperature`` (no grad).

    Args:
        logits (Tensor): Logits of shape (B, C).
        temperature (float): The temperature :math:`T`. Defaults to 1.0.
        out (Tensor, optional): A (B, C) buffer for the exponentials.
            Defaults to None.
        row_max (Tensor, optional): (B, ) shift to use instead of the row
            maximum of ``logits`` (e.g. the maximum over all class shards).
            Defaults to None.

    Returns:
        SoftmaxStats: The statistics.
    """
    with torch.no_grad():
        z = logits.detach()
        zmax = z.amax(dim=1, keepdim=True) if row_max is None \
            else row_max.to(z.dtype).reshape(-1, 1)
        if temperature != 1.0:
            scale = torch.tensor(1.0 / temperature, dtype=z.dtype,
                                 device=z.device)
            # (z - max) / T in one pass
            e = torch.addcmul(-zmax * scale, z, scale, out=out) \
                if out is not None else torch.addcmul(-zmax * scale, z, scale)
        else:
            e = torch.sub(z, zmax, out=out) if out is not None else z - zmax
        e.exp_()
        return SoftmaxStats(zmax.squeeze(1) / temperature, e, e.sum(dim=1))

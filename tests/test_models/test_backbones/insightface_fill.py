"""Deterministic weight fill for architecture-equivalence tests.

Two independent implementations of the same architecture (ours and
insightface ``arcface_torch``) can be compared by output only if they hold
identical weights. ``deterministic_fill_`` derives every ``state_dict`` entry
from its position and shape alone, so any model whose ordered ``state_dict``
keys/shapes match gets the same weights, and then must give the same output on
``reference_input()``. ``tests/data/insightface_reference.json`` stores the
expected outputs produced this way from insightface's own code.
"""
import math

import torch
from torch import nn


def deterministic_fill_(model: nn.Module) -> None:
    """Overwrite all ``model.state_dict()`` entries deterministically, in
    place.

    Entry ``i`` (counting in state_dict order, ``num_batches_tracked`` skipped
    and not counted) uses ``torch.Generator().manual_seed(1000 + i)``. Values
    are drawn in float32 and copied into the target dtype, so the fill does not
    depend on whether the model is float or double.
    """
    modules = dict(model.named_modules())
    i = 0
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith('num_batches_tracked'):
                continue
            g = torch.Generator().manual_seed(1000 + i)
            i += 1
            shape = tuple(tensor.shape)
            if tensor.dim() > 1:
                value = torch.randn(shape, generator=g) / math.sqrt(
                    math.prod(shape[1:]))
            elif key.endswith('running_var'):
                value = 1 + 0.1 * torch.rand(shape, generator=g)
            elif key.endswith(('running_mean', 'bias')):
                value = 0.1 * torch.randn(shape, generator=g)
            elif key.endswith('weight'):
                owner = modules.get(key.rpartition('.')[0])
                if isinstance(owner, nn.PReLU):
                    value = 0.25 + 0.05 * torch.randn(shape, generator=g)
                else:  # BatchNorm-like affine weight
                    value = 1 + 0.1 * torch.randn(shape, generator=g)
            else:
                raise KeyError(f'no fill rule for state_dict key {key!r}')
            tensor.copy_(value)


def reference_input() -> torch.Tensor:
    """Fixed (2, 3, 112, 112) float64 input batch."""
    return torch.randn(
        2, 3, 112, 112,
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64)

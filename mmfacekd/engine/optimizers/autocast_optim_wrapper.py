"""Mixed precision without a loss scaler: bfloat16 autocast (e.g. on CPU)."""
from contextlib import contextmanager
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper

from mmfacekd.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """:class:`OptimWrapper` whose forward runs under ``torch.autocast``.

    MMEngine's ``AmpOptimWrapper`` is float16 with a grad scaler and
    refuses to build without a CUDA/NPU/MLU device. bfloat16 has float32's
    range, so it needs no scaler, and PyTorch autocasts it on CPU too;
    ``tools/train.py --amp`` picks this wrapper when no GPU is present.
    Parameters, gradients and optimizer state stay float32.

    Args:
        dtype (str | torch.dtype): Autocast dtype. Defaults to 'bfloat16'.
        device_type (str, optional): Autocast device; defaults to the
            device of the model's first parameter.
        **kwargs: :class:`OptimWrapper` arguments (``optimizer``,
            ``clip_grad``, ``accumulative_counts``).
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16',
                 device_type: Optional[str] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) \
            else dtype
        self.device_type = device_type

    @contextmanager
    def optim_context(self, model: nn.Module):
        device = self.device_type or next(model.parameters()).device.type
        with super().optim_context(model), \
                torch.autocast(device_type=device, dtype=self.cast_dtype):
            yield

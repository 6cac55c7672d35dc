"""Optimizer constructor that only hands trainable parameters to the
optimizer."""
import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

from mmfacekd.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableParamsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """:class:`DefaultOptimWrapperConstructor` minus frozen parameters.

    A distiller's teacher is frozen (``requires_grad=False``); MMEngine's
    default constructor would still put its parameters into the optimizer.
    This one removes every parameter that does not require a gradient (and
    any parameter group left empty), honouring ``paramwise_cfg`` otherwise.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        optim_wrapper = super().__call__(model)
        optimizer = optim_wrapper.optimizer
        groups = []
        for group in optimizer.param_groups:
            group['params'] = [p for p in group['params'] if p.requires_grad]
            if group['params']:
                groups.append(group)
        optimizer.param_groups = groups
        return optim_wrapper

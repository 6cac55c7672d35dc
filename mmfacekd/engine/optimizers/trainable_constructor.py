"""Optimizer constructor that only hands trainable parameters to the
optimizer (and clips class-sharded models by their global norm)."""
import torch
import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

from mmfacekd.models.utils.class_shard import is_model_parallel
from mmfacekd.registry import OPTIM_WRAPPER_CONSTRUCTORS

from .sharded_clip import clip_grad_norm_sharded


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableParamsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """:class:`DefaultOptimWrapperConstructor` minus frozen parameters.

    A distiller's teacher is frozen (``requires_grad=False``); MMEngine's
    default constructor would still put its parameters into the optimizer.
    This one removes every parameter that does not require a gradient (and
    any parameter group left empty), honouring ``paramwise_cfg`` otherwise.

    With ``clip_grad=dict(type='norm', ...)`` and class-sharded parameters
    (``PartialFCHead``), the wrapper clips by the norm over all ranks
    (:func:`clip_grad_norm_sharded`) instead of each rank's own norm,
    which would scale the replicated gradients differently per rank.
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
        sharded = any(is_model_parallel(p) for p in model.parameters())
        if sharded and getattr(optim_wrapper, 'clip_func', None) is \
                torch.nn.utils.clip_grad_norm_:
            optim_wrapper.clip_func = clip_grad_norm_sharded
        return optim_wrapper

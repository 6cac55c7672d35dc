from .autocast_optim_wrapper import AutocastOptimWrapper
from .sharded_clip import clip_grad_norm_sharded
from .trainable_constructor import TrainableParamsOptimWrapperConstructor

__all__ = ['AutocastOptimWrapper', 'TrainableParamsOptimWrapperConstructor',
           'clip_grad_norm_sharded']

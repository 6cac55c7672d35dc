from .autocast_optim_wrapper import AutocastOptimWrapper
from .trainable_constructor import TrainableParamsOptimWrapperConstructor

__all__ = ['AutocastOptimWrapper', 'TrainableParamsOptimWrapperConstructor']

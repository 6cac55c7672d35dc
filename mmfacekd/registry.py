"""Registries of mmfacekd: children of MMEngine's root registries.

Every registry has scope ``mmfacekd`` (set by the package name) and a
``locations`` list, so a config with ``default_scope='mmfacekd'`` builds its
objects without importing anything by hand.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import (
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
)
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

__all__ = [
    'MODELS', 'MODEL_WRAPPERS', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS',
    'METRICS', 'EVALUATOR', 'HOOKS', 'LOOPS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
    'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'VISUALIZERS',
    'VISBACKENDS'
]



def _child(parent: Registry, locations: list) -> Registry:
    """A child of the MMEngine root registry ``parent``, with its name, the
    scope inferred from this module (``mmfacekd``) and ``locations``."""
    return Registry(parent.name, parent=parent, locations=locations)


# models
MODELS = _child(MMENGINE_MODELS, locations=['mmfacekd.models'])
MODEL_WRAPPERS = _child(MMENGINE_MODEL_WRAPPERS, locations=['mmfacekd.engine'])
# data
DATASETS = _child(MMENGINE_DATASETS, locations=['mmfacekd.datasets'])
DATA_SAMPLERS = _child(MMENGINE_DATA_SAMPLERS, locations=['mmfacekd.datasets'])
TRANSFORMS = _child(MMENGINE_TRANSFORMS, locations=['mmfacekd.datasets'])
# evaluation
METRICS = _child(MMENGINE_METRICS, locations=['mmfacekd.evaluation'])
EVALUATOR = _child(MMENGINE_EVALUATOR, locations=['mmfacekd.evaluation'])
# training loop
HOOKS = _child(MMENGINE_HOOKS, locations=['mmfacekd.engine'])
LOOPS = _child(MMENGINE_LOOPS, locations=['mmfacekd.engine'])
# optimization
OPTIMIZERS = _child(MMENGINE_OPTIMIZERS, locations=['mmfacekd.engine'])
OPTIM_WRAPPERS = _child(MMENGINE_OPTIM_WRAPPERS, locations=['mmfacekd.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _child(
    MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, locations=['mmfacekd.engine'])
PARAM_SCHEDULERS = _child(
    MMENGINE_PARAM_SCHEDULERS, locations=['mmfacekd.engine'])
# visualization
VISUALIZERS = _child(MMENGINE_VISUALIZERS, locations=['mmfacekd.engine'])
VISBACKENDS = _child(MMENGINE_VISBACKENDS, locations=['mmfacekd.engine'])

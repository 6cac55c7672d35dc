from .checkpoint_safety import (
                                load_checkpoint_safely,
                                register_safe_globals,
                                safe_globals,
)
from .cpu_malloc import tune_cpu_malloc
from .dist_env import init_cpu_dist_if_needed, shutdown_dist
from .job_runner import JobFailed, last_checkpoint, train_and_test
from .prototypes import compute_class_prototypes
from .setup_env import register_all_modules

__all__ = ['load_checkpoint_safely', 'register_safe_globals', 'safe_globals',
           'register_all_modules',
           'init_cpu_dist_if_needed', 'shutdown_dist', 'tune_cpu_malloc',
           'compute_class_prototypes',
           'JobFailed', 'last_checkpoint', 'train_and_test']

"""Importing this package registers hooks, optimizer constructors, wrappers
and the atomic checkpoint file backend."""
from .atomic_file_backend import AtomicLocalBackend, write_atomic  # noqa
from .hooks import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
from .wrappers import *  # noqa: F401,F403

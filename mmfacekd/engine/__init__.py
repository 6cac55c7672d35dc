"""Importing this package registers hooks and model wrappers."""
from .hooks import *  # noqa: F401,F403
from .wrappers import *  # noqa: F401,F403

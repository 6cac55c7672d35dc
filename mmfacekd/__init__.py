"""mmfacekd: knowledge distillation for face recognition on MMEngine.

Importing the package registers nothing process-wide beyond its modules; the
safe-checkpoint setup is explicit
(:func:`mmfacekd.utils.register_safe_globals`, called by the tools and by
``SafeCheckpointHook``).
"""
from .version import __version__

__all__ = ['__version__']

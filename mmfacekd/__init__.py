"""mmfacekd: knowledge distillation for face recognition on MMEngine."""
from .utils.checkpoint_safety import register_safe_globals
from .version import __version__

# Make MMEngine's own checkpoints loadable under torch's ``weights_only=True``.
register_safe_globals()

__all__ = ['__version__', 'register_safe_globals']

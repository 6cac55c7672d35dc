"""Model-side utilities."""
from .dist_gather import gather_no_grad, gather_with_grad, get_world_size

__all__ = ['gather_no_grad', 'gather_with_grad', 'get_world_size']

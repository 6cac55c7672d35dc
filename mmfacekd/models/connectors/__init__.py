from .projection import ProjectionConnector
from .urfm import URFM, flatten_pixel_features, grid_positions, piecewise_index

__all__ = ['ProjectionConnector', 'URFM', 'piecewise_index',
           'flatten_pixel_features', 'grid_positions']

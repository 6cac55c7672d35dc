from .projection import ProjectionConnector

__all__ = ['ProjectionConnector']

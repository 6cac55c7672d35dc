"""Core constants and structures shared by datasets, models and tools."""
from .face_template import ARCFACE_TEMPLATE_112

__all__ = ['ARCFACE_TEMPLATE_112']

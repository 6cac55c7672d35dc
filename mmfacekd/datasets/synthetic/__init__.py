"""Procedural synthetic face data (numpy + OpenCV)."""
from .face_renderer import (ARCFACE_TEMPLATE_112, BACKGROUNDS, BEARD_STYLES,
                            GLASSES_STYLES, HAIR_STYLES, OCCLUDERS,
                            FaceIdentity, FaceNuisance, render_face,
                            sample_identity, sample_nuisance)

__all__ = [
    'ARCFACE_TEMPLATE_112', 'FaceIdentity', 'FaceNuisance', 'sample_identity',
    'sample_nuisance', 'render_face', 'HAIR_STYLES', 'BEARD_STYLES',
    'GLASSES_STYLES', 'OCCLUDERS', 'BACKGROUNDS'
]

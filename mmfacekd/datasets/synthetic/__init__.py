"""Procedural synthetic face data (numpy + OpenCV).

The renderer is split by concern: :mod:`.identity` (who), :mod:`.nuisance`
(per-image conditions), :mod:`.painting` (pose warp and face parts),
:mod:`.photometrics` (background, lighting, blur, noise), composed by
:func:`.face_renderer.render_face`. The set writers are
:mod:`.synthetic_set` (RecordIO + .bin), :mod:`.identification_set` (1:N)
and :mod:`.ijb_bundle` (IJB-style templates).
"""
from mmfacekd.structures.face_template import ARCFACE_TEMPLATE_112

from .face_renderer import render_face
from .identity import (
    BEARD_STYLES,
    GLASSES_STYLES,
    HAIR_STYLES,
    FaceIdentity,
    sample_identity,
)
from .nuisance import BACKGROUNDS, OCCLUDERS, FaceNuisance, sample_nuisance

__all__ = [
    'ARCFACE_TEMPLATE_112', 'FaceIdentity', 'FaceNuisance', 'sample_identity',
    'sample_nuisance', 'render_face', 'HAIR_STYLES', 'BEARD_STYLES',
    'GLASSES_STYLES', 'OCCLUDERS', 'BACKGROUNDS'
]

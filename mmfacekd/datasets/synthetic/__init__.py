"""Procedural synthetic face data (numpy + OpenCV).

The renderer is split by concern: :mod:`.identity` (who), :mod:`.nuisance`
(per-image conditions), :mod:`.painting` (pose warp and face parts),
:mod:`.photometrics` (background, lighting, blur, noise), composed by
:func:`.face_renderer.render_face`. The set writers are
:mod:`.synthetic_set` (RecordIO + .bin), :mod:`.identification_set` (1:N)
and :mod:`.ijb_bundle` (IJB-style templates).
"""
from .face_renderer import (
    ARCFACE_TEMPLATE_112,
    BACKGROUNDS,
    BEARD_STYLES,
    GLASSES_STYLES,
    HAIR_STYLES,
    OCCLUDERS,
    FaceIdentity,
    FaceNuisance,
    render_face,
    sample_identity,
    sample_nuisance,
)

__all__ = [
    # the renderer and its template (:mod:`.face_renderer`)
    'render_face', 'ARCFACE_TEMPLATE_112',
    # who (:mod:`.identity`)
    'FaceIdentity', 'sample_identity', 'HAIR_STYLES', 'BEARD_STYLES',
    'GLASSES_STYLES',
    # per-image conditions (:mod:`.nuisance`)
    'FaceNuisance', 'sample_nuisance', 'OCCLUDERS', 'BACKGROUNDS',
]

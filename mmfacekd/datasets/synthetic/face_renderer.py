"""Procedural synthetic face renderer (numpy + OpenCV only).

A face is described by two dataclasses:

- :class:`FaceIdentity`: everything that belongs to the person (head shape,
  skin, eyes, brows, nose, mouth, hair, glasses, beard, mole). Sampled once
  per identity with :func:`sample_identity`.
- :class:`FaceNuisance`: everything that changes from photo to photo (pose,
  lighting, expression, background, blur, noise, occlusion). Sampled per
  image with :func:`sample_nuisance`; ``FaceNuisance()`` is the zero
  nuisance.

:func:`render_face` draws the face with OpenCV anti-aliased polygons in the
frame of the 112x112 ArcFace alignment template: with zero nuisance the eye
centres, nose tip and mouth corners land on :data:`ARCFACE_TEMPLATE_112`
shifted by the identity's own geometry (a few pixels at most). The pose
nuisance is applied to every drawn point (and to the five landmarks), so the
returned landmarks are exact for the returned image.

Geometry conventions (all in the 112x112 reference frame, scaled by
``size / 112`` for other sizes):

1. yaw: each point's x moves as ``56 + (x - 56) * cos(yaw) + (z - z_eye) *
   sin(yaw)`` where ``z`` is the depth of a point on an ellipsoidal head
   (the outline and hair have ``z = 0``; the nose protrudes). The eyes stay
   roughly in place, the nose swings towards the turn and the outline swings
   away from it, like an aligned crop of a turned head.
2. similarity: ``p' = R(angle) * scale * (p - c) + c + shift`` with the
   centre ``c = (56, 56)`` and ``R`` the on-screen counter-clockwise rotation
   of :func:`cv2.getRotationMatrix2D` (``angle`` in degrees).
3. output scaling: ``p'' = p' * size / 112``.

The implementation is split by concern: :mod:`.identity` (the person and
its sampler), :mod:`.nuisance` (the per-image conditions and their sampler),
:mod:`.painting` (the pose warp and the face parts) and :mod:`.photometrics`
(background, blur, lighting, noise); this module composes them and keeps
the public API. The alignment template itself is a core constant,
:data:`mmfacekd.structures.ARCFACE_TEMPLATE_112` (re-exported here).

Everything is deterministic: the same ``(identity, nuisance, size)`` gives a
byte-identical image, and the ``sample_*`` functions draw only from the
generator passed in (with a fixed number of draws, so the same generator
state gives "the same" nuisance at every difficulty, only scaled).
"""
from typing import Tuple

import numpy as np

from mmfacekd.structures.face_template import ARCFACE_TEMPLATE_112

from .identity import (
    BEARD_STYLES,
    GLASSES_STYLES,
    HAIR_STYLES,
    FaceIdentity,
    sample_identity,
)
from .nuisance import BACKGROUNDS, OCCLUDERS, FaceNuisance, sample_nuisance
from .painting import Painter, paint_face
from .photometrics import apply_photometrics, render_background

__all__ = [
    'ARCFACE_TEMPLATE_112', 'FaceIdentity', 'FaceNuisance', 'sample_identity',
    'sample_nuisance', 'render_face', 'HAIR_STYLES', 'BEARD_STYLES',
    'GLASSES_STYLES', 'OCCLUDERS', 'BACKGROUNDS'
]

_REF = 112.0  # reference frame size


def render_face(identity: FaceIdentity,
                nuisance: FaceNuisance,
                size: int = 112) -> Tuple[np.ndarray, np.ndarray]:
    """Render one face.

    Args:
        identity (FaceIdentity): who.
        nuisance (FaceNuisance): the per-image conditions.
        size (int): output side length; the geometry is the 112x112
            reference frame scaled by ``size / 112``. Default: 112.

    Returns:
        tuple[np.ndarray, np.ndarray]: the ``(size, size, 3)`` uint8 **RGB**
        image and the ``(5, 2)`` float32 landmarks (left eye, right eye, nose
        tip, left and right mouth corner) in its pixel coordinates.
    """
    idt, nui = identity, nuisance
    k = size / _REF
    # one generator per image, for the background texture and then the
    # sensor noise (in that order)
    need_rng = (nui.bg_texture > 0 and nui.background != 0) or \
        nui.noise_sigma > 0
    rng = np.random.default_rng(nui.seed) if need_rng else None
    img = render_background(size, nui, rng)
    p = Painter(img, idt, nui, k)
    lms = paint_face(p, idt, nui)
    img = apply_photometrics(p.img, nui, rng, k)
    return img, lms

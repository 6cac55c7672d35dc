"""Nuisance of a synthetic face photo: what changes from image to image.

:class:`FaceNuisance` holds pose, lighting, expression, background and
clothing, sensor blur/noise and occlusion; ``FaceNuisance()`` is the zero
nuisance. :func:`sample_nuisance` draws one whose strength scales with a
``difficulty``, with a number of draws that does not depend on it.
"""
import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from .identity import SKIN_STOPS, Color, clip_color, mix_color

__all__ = ['FaceNuisance', 'sample_nuisance', 'OCCLUDERS', 'BACKGROUNDS']

#: Names of the ``FaceNuisance.occluder`` values.
OCCLUDERS = ('none', 'rect', 'hand', 'sunglasses', 'mask')
#: Names of the ``FaceNuisance.background`` values.
BACKGROUNDS = ('flat', 'gradient', 'blotches', 'shapes')

_NEUTRAL_BG = (150.0, 150.0, 150.0)
_NEUTRAL_SHIRT = (70.0, 80.0, 100.0)

@dataclass
class FaceNuisance:
    """Per-image nuisance; the defaults are the zero nuisance.

    Geometry is in 112x112 reference-frame pixels (see
    :mod:`.face_renderer` for the exact transform), colours are RGB. The
    ``rect`` and ``hand`` occluders are placed by
    ``occ_center/occ_size/occ_angle`` in the output
    frame (they are in front of the camera, not on the head); ``sunglasses``
    and ``mask`` are worn, i.e. follow the pose (``occ_size[0] > 29`` picks
    square lenses).
    """
    # pose
    angle: float = 0.0  # in-plane rotation, degrees, counter-clockwise
    scale: float = 1.0
    shift: Tuple[float, float] = (0.0, 0.0)  # translation (x, y)
    yaw: float = 0.0  # degrees, > 0 turns the inner features to image right
    # lighting
    brightness: float = 0.0  # additive, grey levels
    contrast: float = 1.0  # multiplicative around 128
    light_dir: float = 0.0  # degrees, direction the light comes from
    light_strength: float = 0.0  # relative gain change across the image
    color_cast: Color = (1.0, 1.0, 1.0)  # per-channel gains
    # expression
    smile: float = 0.0  # -1 (frown) .. 1 (smile)
    mouth_open: float = 0.0  # 0 .. 1
    blink: float = 0.0  # 0 (open) .. 1 (closed)
    brow_raise: float = 0.0  # -1 .. 1
    gaze: Tuple[float, float] = (0.0, 0.0)  # iris offset
    # background and clothing
    background: int = 0  # index into BACKGROUNDS
    bg_color: Color = _NEUTRAL_BG
    bg_texture: float = 0.0  # texture amplitude in [0, 1]
    shirt_color: Color = _NEUTRAL_SHIRT
    # sensor
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0  # grey levels
    # occlusion
    occluder: int = 0  # index into OCCLUDERS
    occ_center: Tuple[float, float] = (56.0, 80.0)
    occ_size: Tuple[float, float] = (30.0, 20.0)
    occ_angle: float = 0.0
    occ_color: Color = (40.0, 40.0, 40.0)
    seed: int = 0  # seeds the background texture and the sensor noise



def sample_nuisance(rng: np.random.Generator,
                    difficulty: float = 1.0) -> FaceNuisance:
    """Sample a per-image nuisance whose strength scales with ``difficulty``.

    ``difficulty=0`` gives the zero nuisance (only ``seed`` is random and it
    has no effect then). The number of draws from ``rng`` does not depend on
    ``difficulty``.

    Args:
        rng (np.random.Generator): the only source of randomness.
        difficulty (float): nuisance strength, >= 0; 1.0 is the calibrated
            default (raw-pixel verification accuracy about 0.67), 0.5 is
            easy (about 0.83), 1.5 hard (about 0.62).

    Returns:
        FaceNuisance: the sampled nuisance.
    """
    d = max(0.0, float(difficulty))
    d1 = min(1.0, d)
    z = rng.standard_normal(16)
    v = rng.uniform(size=24)
    bg_rand = rng.uniform(60.0, 200.0) + rng.normal(0.0, 25.0, 3)
    shirt_rand = rng.uniform(20.0, 220.0, 3)
    occ_rand = rng.uniform(30.0, 225.0, 3)
    seed = int(rng.integers(0, 2**31 - 1))

    # pose
    angle = float(np.clip(z[0] * 5.0 * d, -20.0, 20.0))
    scale = float(math.exp(np.clip(z[1] * 0.05 * d, -0.2, 0.2)))
    shift = (float(np.clip(z[2] * 2.0 * d, -8.0, 8.0)),
             float(np.clip(z[3] * 2.0 * d, -8.0, 8.0)))
    yaw = float(np.clip(z[4] * 12.0 * d, -30.0, 30.0))
    # lighting
    brightness = float(np.clip(z[5] * 18.0 * d, -60.0, 60.0))
    contrast = float(math.exp(np.clip(z[6] * 0.18 * d, -0.6, 0.6)))
    light_dir = float(v[0] * 360.0)
    light_strength = float(v[1] * 0.3 * d)
    cast = np.exp(np.clip(z[7:10] * 0.07 * d, -0.3, 0.3))
    # expression
    smile = float(np.clip(z[10] * 0.45 * d, -0.6, 1.0))
    mouth_open = float(v[3] * d1) if v[2] < 0.35 * d1 else 0.0
    blink = float((0.4 + 0.6 * v[5]) * d1) if v[4] < 0.12 * d1 else 0.0
    brow_raise = float(np.clip(z[11] * 0.5 * d, -1.2, 1.2))
    gaze = (float(np.clip(z[12] * 0.7 * d, -1.5, 1.5)),
            float(np.clip(z[13] * 0.4 * d, -1.0, 1.0)))
    # background, clothing
    background = int(v[6] * len(BACKGROUNDS)) if d > 0 else 0
    bg_color = mix_color(_NEUTRAL_BG, bg_rand, d1)
    bg_texture = float((0.3 + 0.7 * v[7]) * d1)
    shirt = mix_color(_NEUTRAL_SHIRT, shirt_rand, d1)
    # sensor
    blur_sigma = float((0.2 + 1.0 * v[9]) * d) if v[8] < 0.5 * d1 else 0.0
    noise_sigma = float(v[10] * 7.0 * d)
    # occlusion
    occluder = 0
    if v[11] < min(0.6, 0.2 * d):
        occluder = 1 + int(v[12] * (len(OCCLUDERS) - 1))
    occ_center = (float(20.0 + 72.0 * v[13]), float(40.0 + 60.0 * v[14]))
    occ_size = (float(16.0 + 26.0 * v[15]), float(12.0 + 22.0 * v[16]))
    occ_angle = float(v[17] * 360.0)
    if occluder == 2:  # hand: skin tone, reaching in from below/sides
        occ_color = mix_color(SKIN_STOPS[int(v[18] * 4.999)], occ_rand, 0.1)
        occ_center = (float(30.0 + 52.0 * v[13]), float(80.0 + 25.0 * v[14]))
        occ_angle = float(-90.0 + (v[17] - 0.5) * 120.0)
        occ_size = (occ_size[0] + 14.0, occ_size[1])
    elif occluder == 3:  # sunglasses: dark lenses
        occ_color = clip_color(occ_rand * 0.2)
    elif occluder == 4:  # medical mask: light colours
        occ_color = mix_color(occ_rand, (235, 240, 245), 0.75)
    else:
        occ_color = clip_color(occ_rand)
    if occluder == 0:  # inert fields get their defaults
        occ_center, occ_size = FaceNuisance.occ_center, FaceNuisance.occ_size
        occ_angle, occ_color = 0.0, FaceNuisance.occ_color
    if light_strength == 0.0:
        light_dir = 0.0
    return FaceNuisance(
        angle=angle,
        scale=scale,
        shift=shift,
        yaw=yaw,
        brightness=brightness,
        contrast=contrast,
        light_dir=light_dir,
        light_strength=light_strength,
        color_cast=clip_color(cast),
        smile=smile,
        mouth_open=mouth_open,
        blink=blink,
        brow_raise=brow_raise,
        gaze=gaze,
        background=background,
        bg_color=bg_color,
        bg_texture=bg_texture,
        shirt_color=shirt,
        blur_sigma=blur_sigma,
        noise_sigma=noise_sigma,
        occluder=occluder,
        occ_center=occ_center,
        occ_size=occ_size,
        occ_angle=occ_angle,
        occ_color=occ_color,
        seed=seed)


"""Identity of a synthetic face: what belongs to the person.

:class:`FaceIdentity` holds head shape, skin, eyes, brows, nose, mouth,
hair, glasses, beard and mole (112x112 reference-frame pixels, RGB colours);
:func:`sample_identity` draws one from a generator with a fixed number of
draws, so the same generator state always gives the same person. Also the
colour helpers and skin palette shared with the nuisance sampler.
"""
from dataclasses import dataclass
from typing import Tuple

import numpy as np

__all__ = [
    'Color', 'FaceIdentity', 'sample_identity', 'HAIR_STYLES',
    'BEARD_STYLES', 'GLASSES_STYLES', 'SKIN_STOPS', 'clip_color', 'mix_color'
]

Color = Tuple[float, float, float]

#: Names of the ``FaceIdentity.hair_style`` values.
HAIR_STYLES = ('short', 'long', 'bangs', 'bald', 'receding', 'curly',
               'side_part', 'buzz', 'bun')
#: Names of the ``FaceIdentity.beard`` values.
BEARD_STYLES = ('none', 'moustache', 'goatee', 'full', 'stubble')
#: Names of the ``FaceIdentity.glasses`` values.
GLASSES_STYLES = ('none', 'round', 'square')

@dataclass
class FaceIdentity:
    """Per-identity geometry and colour (112x112 reference-frame pixels).

    Colours are RGB tuples in [0, 255]. The defaults describe an average
    face; use :func:`sample_identity` for random identities.
    """
    # head
    face_rx: float = 40.0  # half-width of the cranium
    face_top: float = 52.0  # cranium height above ``face_cy``
    face_bottom: float = 50.0  # chin distance below ``face_cy``
    face_cy: float = 60.0  # vertical centre of the head ellipse
    jaw_taper: float = 0.15  # narrowing of the lower face (0 = none)
    jaw_square: float = 0.9  # jaw exponent (< 1 square, > 1 pointed chin)
    skin_color: Color = (222.0, 174.0, 142.0)
    blush: float = 0.1  # cheek blush strength in [0, 1]
    ear_size: float = 1.0
    # eyes (offsets move the eye centres away from the template)
    eye_dx: float = 0.0  # outward shift of both eyes
    eye_dy: float = 0.0  # downward shift of both eyes
    eye_width: float = 6.4  # half-width
    eye_height: float = 3.0  # half-height of the opening
    eye_tilt: float = 0.0  # canthal tilt, degrees (outer corner up > 0)
    iris_radius: float = 2.8
    iris_color: Color = (95.0, 65.0, 45.0)
    lash: float = 1.2  # upper-lid line thickness
    # eyebrows
    brow_thickness: float = 2.2
    brow_angle: float = 4.0  # degrees, outer end up > 0
    brow_height: float = 9.5  # gap between eye centre and brow
    brow_length: float = 1.1  # relative to the eye width
    brow_arch: float = 1.5
    brow_color: Color = (70.0, 50.0, 38.0)
    # nose
    nose_dy: float = 0.0  # downward shift of the nose tip
    nose_width: float = 7.5  # half-width of the alae
    nose_bridge: float = 0.6  # visibility/length of the bridge shadow
    nose_round: float = 1.0  # size of the tip highlight
    nose_depth: float = 11.0  # protrusion of the tip (yaw parallax)
    # mouth
    mouth_dx: float = 0.0  # outward shift of both corners
    mouth_dy: float = 0.0  # downward shift of both corners
    upper_lip: float = 2.2
    lower_lip: float = 3.0
    mouth_curve: float = 0.0  # > 0 corners up (smiling rest shape)
    lip_color: Color = (196.0, 112.0, 108.0)
    # hair
    hair_style: int = 0  # index into HAIR_STYLES
    hair_color: Color = (70.0, 50.0, 38.0)
    hairline: float = 20.0  # y of the hairline at the midline
    hair_volume: float = 3.0
    hair_part: float = 0.3  # -1 .. 1, side of the parting / sweep
    # identity marks
    glasses: int = 0  # index into GLASSES_STYLES
    glasses_color: Color = (30.0, 30.0, 30.0)
    glasses_thickness: float = 1.0
    beard: int = 0  # index into BEARD_STYLES
    beard_color: Color = (70.0, 50.0, 38.0)
    mole: Tuple[float, float, float] = (0.0, 0.0, 0.0)  # x, y, radius (0=no)



# ----------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------

SKIN_STOPS = np.array([[92, 58, 42], [150, 100, 70], [196, 140, 104],
                        [226, 180, 148], [246, 212, 190]], np.float64)
_HAIR_PALETTE = np.array([[25, 22, 22], [55, 38, 28], [95, 62, 40],
                          [140, 100, 62], [215, 180, 115], [150, 70, 35],
                          [150, 150, 150], [225, 225, 220]], np.float64)
_HAIR_P = np.array([0.28, 0.24, 0.14, 0.09, 0.09, 0.05, 0.07, 0.04])
_IRIS_PALETTE = np.array([[50, 32, 24], [95, 62, 40], [125, 100, 55],
                          [80, 115, 75], [80, 120, 165], [115, 125, 135]],
                         np.float64)
_IRIS_P = np.array([0.35, 0.25, 0.12, 0.08, 0.12, 0.08])
_HAIR_STYLE_P = np.array([0.22, 0.15, 0.11, 0.07, 0.08, 0.08, 0.13, 0.09,
                          0.07])
_BEARD_P = np.array([0.68, 0.08, 0.07, 0.09, 0.08])
_FRAME_PALETTE = np.array([[25, 25, 25], [90, 55, 35], [190, 160, 80],
                           [170, 170, 175], [150, 35, 40], [40, 60, 120]],
                          np.float64)
_MOLE_SPOTS = np.array([[34, 70], [78, 68], [44, 102], [66, 100], [30, 42],
                        [82, 36], [56, 30], [48, 80]], np.float64)


def clip_color(c: np.ndarray) -> Color:
    c = np.clip(c, 0.0, 255.0)
    return (float(c[0]), float(c[1]), float(c[2]))


def mix_color(a, b, t: float) -> Color:
    return clip_color((1.0 - t) * np.asarray(a, np.float64) +
                t * np.asarray(b, np.float64))


def _pick(rng: np.random.Generator, p: np.ndarray) -> int:
    return int(np.searchsorted(np.cumsum(p), rng.uniform() * p.sum()))


def sample_identity(rng: np.random.Generator) -> FaceIdentity:
    """Sample a random identity.

    Args:
        rng (np.random.Generator): the only source of randomness.

    Returns:
        FaceIdentity: the sampled identity.
    """
    u, n = rng.uniform, rng.normal
    # skin: piecewise-linear tone ramp plus a small per-channel hue jitter
    tone = u(0.0, len(SKIN_STOPS) - 1.0)
    i = min(int(tone), len(SKIN_STOPS) - 2)
    skin = SKIN_STOPS[i] + (tone - i) * (SKIN_STOPS[i + 1] - SKIN_STOPS[i])
    skin = skin + n(0.0, 6.0, 3)
    hair_idx = _pick(rng, _HAIR_P)
    hair = _HAIR_PALETTE[hair_idx] + n(0.0, 9.0, 3)
    style = _pick(rng, _HAIR_STYLE_P)
    brow_col = mix_color(hair, (35, 25, 20), u(0.15, 0.55))
    if hair_idx >= 6:  # grey/white hair keeps some brow pigment
        brow_col = mix_color(brow_col, (90, 80, 75), 0.5)
    lip = mix_color(skin, (200, 70, 85), u(0.25, 0.6))
    iris = _IRIS_PALETTE[_pick(rng, _IRIS_P)] + n(0.0, 8.0, 3)
    eye_h = u(2.2, 3.8)
    wears, square = u() < 0.16, u() < 0.5
    glasses = (2 if square else 1) if wears else 0
    frame = _FRAME_PALETTE[int(u() * len(_FRAME_PALETTE))] + n(0, 8.0, 3)
    beard = _pick(rng, _BEARD_P)
    has_mole = u() < 0.18
    spot = _MOLE_SPOTS[int(u() * len(_MOLE_SPOTS))] + n(0.0, 2.5, 2)
    mole_r = u(0.7, 1.5)
    return FaceIdentity(
        face_rx=u(36.0, 44.0),
        face_top=u(48.0, 56.0),
        face_bottom=u(46.0, 53.0),
        face_cy=u(58.0, 62.0),
        jaw_taper=u(0.0, 0.3),
        jaw_square=u(0.55, 1.3),
        skin_color=clip_color(skin),
        blush=u(0.0, 0.3),
        ear_size=u(0.8, 1.2),
        eye_dx=float(np.clip(n(0.0, 1.0), -2.2, 2.2)),
        eye_dy=float(np.clip(n(0.0, 0.8), -1.6, 1.6)),
        eye_width=u(5.2, 7.6),
        eye_height=eye_h,
        eye_tilt=u(-7.0, 9.0),
        iris_radius=min(u(2.3, 3.4), eye_h * 1.25),
        iris_color=clip_color(iris),
        lash=u(0.8, 1.8),
        brow_thickness=u(1.2, 3.6),
        brow_angle=u(-8.0, 14.0),
        brow_height=u(7.5, 12.0),
        brow_length=u(0.9, 1.35),
        brow_arch=u(0.0, 3.0),
        brow_color=brow_col,
        nose_dy=float(np.clip(n(0.0, 1.1), -2.5, 2.5)),
        nose_width=u(5.5, 10.0),
        nose_bridge=u(0.2, 1.0),
        nose_round=u(0.6, 1.4),
        nose_depth=u(8.0, 14.0),
        mouth_dx=float(np.clip(n(0.0, 1.0), -2.2, 2.2)),
        mouth_dy=float(np.clip(n(0.0, 0.8), -1.6, 1.6)),
        upper_lip=u(1.3, 3.2),
        lower_lip=u(1.8, 4.2),
        mouth_curve=u(-1.2, 1.2),
        lip_color=lip,
        hair_style=style,
        hair_color=clip_color(hair),
        hairline=u(14.0, 26.0),
        hair_volume=u(1.0, 6.0),
        hair_part=u(-1.0, 1.0),
        glasses=glasses,
        glasses_color=clip_color(frame),
        glasses_thickness=u(1.0, 2.0),
        beard=beard,
        beard_color=mix_color(hair, (30, 25, 20), 0.2),
        mole=(float(spot[0]), float(spot[1]), mole_r if has_mole else 0.0))



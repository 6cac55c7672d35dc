"""Synthetic face masks drawn from the five face landmarks.

This is mmfacekd's **own** landmark-based renderer (numpy + OpenCV), not
FaceX-Zoo's 3D face-mask adder used by the GKD paper for its masked-face
table: numbers obtained with it are comparable with each other, not
exactly with the paper's.

Design. From the 5 landmarks (left eye, right eye, nose tip, left and right
mouth corner) a face frame is built: origin at the nose tip, ``x`` along
the eye line in units of the inter-ocular distance ``d``, ``y``
perpendicular to it (towards the mouth) in units of the eye-to-mouth
height ``h``. In that frame the eyes sit at about ``y = -0.5`` and the
mouth at ``y = +0.5``. Each shape is a polygon (right half mirrored) from
the nose bridge (``y`` about -0.2 to -0.3) over the cheeks to below the
chin (``y`` about 1.05):

* ``surgical``: straight-sided, usually with horizontal pleats, ear loops;
* ``cloth``: rounded outline (Chaikin-smoothed), often patterned;
* ``n95``: higher pointed nose bridge, conical shading, centre seam.

Colours come from per-shape palettes (or ``colors``), optional textures are
``pleats``, ``stripes``, ``dots`` and fabric ``noise``; ``jitter`` perturbs
width, height and every vertex. The top edge is clamped to ``y >= -0.32``,
i.e. well below the eye line, so the eyes are never covered. Everything is
a pure function of the arguments (``seed`` drives jitter, pattern phase and
noise), so a seed reproduces a mask byte for byte.

Training pipelines can use :class:`RandomFaceMask` as augmentation::

    train_pipeline = [
        dict(type='LoadFaceImage', to_rgb=True),
        dict(type='RandomFaceMask', prob=0.3),  # template landmarks
        dict(type='mmcv.RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='PackFaceInputs'),
    ]

Colours are RGB (``LoadFaceImage``'s default ``to_rgb=True``).
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from mmcv.transforms import BaseTransform

from mmfacekd.registry import TRANSFORMS
from mmfacekd.structures.face_template import ARCFACE_TEMPLATE_112

__all__ = ['draw_mask', 'sample_mask', 'template_landmarks', 'MASK_SHAPES',
           'MASK_TEXTURES', 'MASK_COLORS', 'RandomFaceMask', 'ApplyFaceMask']

MASK_SHAPES = ('surgical', 'cloth', 'n95')
MASK_TEXTURES = ('none', 'pleats', 'stripes', 'dots', 'noise')

#: Default RGB palettes per shape.
MASK_COLORS: Dict[str, Tuple[Tuple[int, int, int], ...]] = {
    'surgical': ((150, 200, 232), (238, 240, 242), (172, 216, 196),
                 (236, 192, 204), (36, 36, 40), (120, 170, 215)),
    'cloth': ((40, 50, 92), (30, 30, 32), (128, 128, 132), (212, 192, 160),
              (168, 40, 52), (80, 110, 152), (96, 108, 60), (230, 230, 225)),
    'n95': ((242, 242, 238), (214, 214, 208), (236, 228, 200),
            (70, 72, 78)),
}

# Right halves (x >= 0) from the top centre clockwise to the bottom centre;
# x in inter-ocular distances, y in eye-to-mouth heights, from the nose tip.
_OUTLINES = {
    'surgical': ((0.0, -0.24), (0.45, -0.2), (0.95, -0.1), (1.02, 0.25),
                 (0.98, 0.6), (0.78, 0.88), (0.42, 1.0), (0.0, 1.04)),
    'cloth': ((0.0, -0.2), (0.4, -0.16), (0.82, -0.04), (1.0, 0.25),
              (0.96, 0.6), (0.72, 0.9), (0.36, 1.03), (0.0, 1.07)),
    'n95': ((0.0, -0.3), (0.32, -0.22), (0.78, -0.04), (0.95, 0.3),
            (0.86, 0.66), (0.56, 0.93), (0.0, 1.03)),
}
_TOP_LIMIT = -0.32  # the top edge never rises above this (eyes at ~-0.5)
_TEXTURE_BY_SHAPE = {
    'surgical': ('pleats', 'pleats', 'stripes', 'noise'),
    'cloth': ('stripes', 'dots', 'noise', 'pleats'),
    'n95': ('noise', 'dots'),
}


def template_landmarks(width: int, height: int) -> np.ndarray:
    """The 112x112 ArcFace template scaled to a ``width x height`` image."""
    return ARCFACE_TEMPLATE_112 * np.array(
        [width / 112.0, height / 112.0], np.float32)


def _frame(lms: np.ndarray):
    """Origin (nose tip), x unit vector * d, y unit vector * h."""
    le, re, nose, lm, rm = lms.astype(np.float64)
    r = re - le
    d = float(np.hypot(*r))
    if d < 1e-3:
        raise ValueError(f'degenerate landmarks (eyes coincide): {lms}')
    ux = r / d
    uy = np.array([-ux[1], ux[0]])  # image y points down: towards the mouth
    h = float(np.dot(0.5 * (lm + rm) - 0.5 * (le + re), uy))
    if h < 0.4 * d:  # implausible (e.g. landmarks in a different order)
        h = 1.15 * d
    return nose, ux * d, uy * h


def _chaikin(poly: np.ndarray, iters: int = 2) -> np.ndarray:
    for _ in range(iters):
        nxt = np.roll(poly, -1, axis=0)
        poly = np.stack([0.75 * poly + 0.25 * nxt, 0.25 * poly + 0.75 * nxt],
                        1).reshape(-1, 2)
    return poly


def _outline(shape: str, jitter: float,
             rng: np.random.Generator) -> np.ndarray:
    half = np.array(_OUTLINES[shape], np.float64)
    n = len(half)
    z = rng.standard_normal(3 + 2 * n)
    k = jitter / 0.05  # 0.05 = moderate: +-8% width, +-0.05 h top, ...
    sx = 1.0 + 0.08 * k * np.tanh(z[0] / 2)  # width
    top = 0.05 * k * np.tanh(z[1] / 2)  # raises/lowers the top edge
    bottom = 1.0 + 0.05 * k * np.tanh(z[2] / 2)  # chin extent
    pts = half.copy()
    pts[:, 0] *= sx
    up = pts[:, 1] < 0.3
    pts[up, 1] += top * (0.3 - pts[up, 1]) / 0.55
    pts[~up, 1] = 0.3 + (pts[~up, 1] - 0.3) * bottom
    pts += jitter * 0.5 * np.tanh(z[3:].reshape(n, 2) / 2)
    pts[0, 0] = pts[-1, 0] = 0.0  # centre points stay on the midline
    pts[:, 0] = np.abs(pts[:, 0])
    pts[:, 1] = np.maximum(pts[:, 1], _TOP_LIMIT)
    left = pts[-2:0:-1] * (-1.0, 1.0)
    poly = np.concatenate([pts, left])
    if shape == 'cloth':
        poly = _chaikin(poly)
        poly[:, 1] = np.maximum(poly[:, 1], _TOP_LIMIT)
    return poly


def _contrast(color: np.ndarray) -> np.ndarray:
    return color * 0.55 if color.mean() > 128 else np.minimum(
        color + 110.0, 255.0)


def draw_mask(img: np.ndarray,
              landmarks: Optional[np.ndarray] = None,
              shape: str = 'surgical',
              color: Sequence[float] = (150, 200, 232),
              texture: str = 'none',
              texture_color: Optional[Sequence[float]] = None,
              jitter: float = 0.0,
              seed: Union[int, Sequence[int]] = 0,
              ear_loops: bool = True,
              return_alpha: bool = False):
    """Draw a synthetic mask over the lower face (see the module doc).

    Args:
        img (np.ndarray): ``(H, W, 3)`` uint8 image; not modified.
        landmarks (np.ndarray, optional): ``(5, 2)`` (x, y) pixel landmarks
            (left eye, right eye, nose, left and right mouth corner). None
            uses the 112x112 ArcFace template scaled to the image size (an
            aligned crop).
        shape (str): one of :data:`MASK_SHAPES`.
        color (Sequence[float]): RGB fill colour.
        texture (str): one of :data:`MASK_TEXTURES`.
        texture_color (Sequence[float], optional): colour of stripes/dots
            (default: a contrasting shade of ``color``).
        jitter (float): random shape perturbation, in face units (0.05 is
            a moderate amount; 0 draws the canonical outline).
        seed (int | Sequence[int]): seeds jitter, pattern and noise.
        ear_loops (bool): draw ear loops (surgical and cloth shapes).
        return_alpha (bool): also return the ``(H, W)`` float32 coverage
            of the mask body in [0, 1].

    Returns:
        np.ndarray | tuple: the masked uint8 image (and the coverage).
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'draw_mask needs an (H, W, 3) image, got '
                         f'{img.shape}')
    if shape not in MASK_SHAPES:
        raise ValueError(f'unknown mask shape {shape!r}; choose from '
                         f'{MASK_SHAPES}')
    if texture not in MASK_TEXTURES:
        raise ValueError(f'unknown mask texture {texture!r}; choose from '
                         f'{MASK_TEXTURES}')
    hgt, wid = img.shape[:2]
    lms = template_landmarks(wid, hgt) if landmarks is None else np.asarray(
        landmarks, np.float64).reshape(5, 2)
    rng = np.random.default_rng(seed)
    origin, ex, ey = _frame(lms)
    poly = _outline(shape, float(jitter), rng)
    pix = origin + poly[:, :1] * ex + poly[:, 1:] * ey
    scale = max(wid, hgt) / 112.0

    cover = np.zeros((hgt, wid), np.uint8)
    cv2.fillPoly(cover, [np.round(pix * 16).astype(np.int32)], 255,
                 cv2.LINE_AA, shift=4)
    alpha = cover.astype(np.float32) / 255.0

    # per-pixel face coordinates (u across, v down) for shading & patterns
    ys, xs = np.mgrid[0:hgt, 0:wid].astype(np.float64)
    px, py = xs - origin[0], ys - origin[1]
    inv = np.linalg.inv(np.stack([ex, ey], 1))
    u = inv[0, 0] * px + inv[0, 1] * py
    v = inv[1, 0] * px + inv[1, 1] * py

    base = np.asarray(color, np.float64).reshape(3)
    tcol = (_contrast(base) if texture_color is None else np.asarray(
        texture_color, np.float64).reshape(3))
    fill = np.broadcast_to(base, (hgt, wid, 3)).copy()
    if texture == 'stripes':
        theta = rng.choice([0.0, 0.5 * np.pi, 0.25 * np.pi, -0.25 * np.pi])
        theta += rng.normal(0.0, 0.08)
        period = rng.uniform(0.12, 0.25)
        phase = rng.uniform(0.0, period)
        band = np.floor((u * np.cos(theta) + v * np.sin(theta) + phase) /
                        period) % 2 == 1
        fill[band] = tcol
    elif texture == 'dots':
        period = rng.uniform(0.15, 0.26)
        du = (u / period + rng.uniform()) % 1.0 - 0.5
        dv = (v / period + rng.uniform()) % 1.0 - 0.5
        fill[du**2 + dv**2 < 0.22**2] = tcol
    elif texture == 'pleats':
        offs = rng.uniform(-0.03, 0.03)
        for vp in (0.12, 0.38, 0.64):
            dist = np.abs(v - vp - offs)
            fill *= (1.0 - 0.22 * np.clip(1.0 - dist / 0.03, 0, 1))[..., None]
            hl = np.clip(1.0 - np.abs(v - vp - offs + 0.05) / 0.025, 0, 1)
            fill += (18.0 * hl)[..., None]
    elif texture == 'noise':
        noise = rng.standard_normal((hgt, wid)).astype(np.float32) * 14.0
        noise = cv2.GaussianBlur(noise, (0, 0), 0.6 * scale)
        fill += noise[..., None].astype(np.float64)
    curve = 0.18 if shape == 'n95' else 0.1
    fill *= np.clip(1.0 - curve * u**2 - 0.05 * v, 0.5, 1.1)[..., None]
    fill = np.clip(fill, 0.0, 255.0)

    out = img.astype(np.float64) * (1.0 - alpha[..., None]) + \
        fill * alpha[..., None]
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    thick = max(1, int(round(scale)))
    edge = tuple(float(c) for c in np.clip(base * 0.8, 0, 255))
    cv2.polylines(out, [np.round(pix * 16).astype(np.int32)], True, edge,
                  thick, cv2.LINE_AA, shift=4)
    if shape == 'n95':  # centre seam
        seam = origin + np.array([[0.0, poly[0, 1] + 0.04], [0.0, 0.95]]) \
            @ np.stack([ex, ey])
        cv2.polylines(out, [np.round(seam * 16).astype(np.int32)], False,
                      edge, thick, cv2.LINE_AA, shift=4)
    elif ear_loops:
        loop_col = tuple(float(c) for c in np.clip(base * 0.9, 0, 255))
        right = poly[poly[:, 0] > 0.5]
        upper = right[np.argmin(np.abs(right[:, 1] + 0.05))]
        lower = right[np.argmin(np.abs(right[:, 1] - 0.6))]
        for sgn in (1.0, -1.0):
            ear = np.array([sgn * 1.2, -0.18])
            for p in (upper, lower):
                seg = np.stack([p * (sgn, 1.0), ear])
                seg = origin + seg[:, :1] * ex + seg[:, 1:] * ey
                cv2.polylines(out, [np.round(seg * 16).astype(np.int32)],
                              False, loop_col, thick, cv2.LINE_AA, shift=4)
    return (out, alpha) if return_alpha else out


def sample_mask(rng: np.random.Generator,
                shapes: Sequence[str] = MASK_SHAPES,
                colors: Optional[Sequence[Sequence[float]]] = None,
                textures: Optional[Sequence[str]] = None,
                texture_prob: float = 0.5,
                jitter: float = 0.05,
                color_jitter: float = 10.0) -> dict:
    """Draw random :func:`draw_mask` keyword arguments from ``rng``.

    Args:
        rng (np.random.Generator): the only source of randomness.
        shapes: shapes to choose from (uniformly).
        colors: RGB colours to choose from; None uses the shape's palette in
            :data:`MASK_COLORS`.
        textures: textures to choose from when a texture is drawn; None
            uses shape-typical ones (pleats for surgical masks, …).
        texture_prob (float): probability of a texture.
        jitter (float): passed to :func:`draw_mask`.
        color_jitter (float): std of a per-channel colour offset.
    """
    shape = str(shapes[int(rng.integers(len(shapes)))])
    palette = MASK_COLORS[shape] if colors is None else colors
    color = np.asarray(palette[int(rng.integers(len(palette)))], np.float64)
    color = np.clip(color + rng.normal(0.0, color_jitter, 3), 0, 255)
    pool = _TEXTURE_BY_SHAPE[shape] if textures is None else textures
    texture = str(pool[int(rng.integers(len(pool)))])
    if rng.uniform() >= texture_prob:
        texture = 'none'
    return dict(shape=shape, color=tuple(float(c) for c in color),
                texture=texture, jitter=float(jitter),
                seed=int(rng.integers(0, 2**31 - 1)))


@TRANSFORMS.register_module()
class RandomFaceMask(BaseTransform):
    """Draw a random synthetic mask (mmfacekd's own landmark-based renderer,
    not FaceX-Zoo's; see :mod:`~mmfacekd.datasets.transforms.synthetic_mask`).

    Uses ``results['landmarks']`` ((5, 2) pixels) when present, else the
    ArcFace template scaled to the image (aligned crops). Adds
    ``results['face_mask']`` (the shape drawn, or None).

    Randomness: with ``seed=None`` each call draws fresh parameters from
    numpy's global generator (which MMEngine seeds per worker under
    ``randomness=dict(seed=...)``): the right choice for training. With an
    integer ``seed`` the mask is a pure function of ``(seed, sample_idx)``
    (``sample_idx`` from the dataset; without one a generator seeded once
    is used), i.e. the same image always gets the same mask on every run,
    worker and rank.

    Args:
        prob (float): probability of masking an image. Defaults to 0.5.
        shapes (Sequence[str]): from :data:`MASK_SHAPES`.
        colors (Sequence, optional): RGB colours (None: per-shape palettes).
        textures (Sequence[str], optional): textures (None: shape-typical).
        texture_prob (float): probability of a texture. Defaults to 0.5.
        jitter (float): shape perturbation. Defaults to 0.05.
        ear_loops (bool): draw ear loops. Defaults to True.
        seed (int, optional): see above. Defaults to None.
    """

    def __init__(self,
                 prob: float = 0.5,
                 shapes: Sequence[str] = MASK_SHAPES,
                 colors: Optional[Sequence[Sequence[float]]] = None,
                 textures: Optional[Sequence[str]] = None,
                 texture_prob: float = 0.5,
                 jitter: float = 0.05,
                 ear_loops: bool = True,
                 seed: Optional[int] = None) -> None:
        bad = [s for s in shapes if s not in MASK_SHAPES]
        bad += [t for t in (textures or ()) if t not in MASK_TEXTURES]
        if bad or not shapes:
            raise ValueError(f'unknown mask shapes/textures {bad}; shapes '
                             f'are {MASK_SHAPES}, textures {MASK_TEXTURES}')
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        self.prob = prob
        self.shapes = tuple(shapes)
        self.colors = None if colors is None else tuple(
            tuple(c) for c in colors)
        self.textures = None if textures is None else tuple(textures)
        self.texture_prob = texture_prob
        self.jitter = jitter
        self.ear_loops = ear_loops
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)

    def _generator(self, results: dict) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(np.random.randint(0, 2**31 - 1))
        if results.get('sample_idx') is not None:
            return np.random.default_rng(
                [self.seed, int(results['sample_idx'])])
        return self._rng

    def _draw(self, results: dict, rng: np.random.Generator) -> dict:
        params = sample_mask(rng, self.shapes, self.colors, self.textures,
                             self.texture_prob, self.jitter)
        results['img'] = draw_mask(results['img'], results.get('landmarks'),
                                   ear_loops=self.ear_loops, **params)
        results['face_mask'] = params['shape']
        return results

    def transform(self, results: dict) -> dict:
        rng = self._generator(results)
        if rng.uniform() >= self.prob:
            results['face_mask'] = None
            return results
        return self._draw(results, rng)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(prob={self.prob}, '
                f'shapes={self.shapes}, seed={self.seed})')


@TRANSFORMS.register_module()
class ApplyFaceMask(RandomFaceMask):
    """Mask exactly the images whose ``results['mask_seed']`` is set.

    The evaluation counterpart of :class:`RandomFaceMask`:
    :class:`VerificationBinDataset` with ``mask='M-M'``/``'M-N'`` sets
    ``mask_seed`` (derived from the set and image index) on the images to
    mask and inserts this transform after ``LoadFaceImage``; the mask
    parameters are drawn from ``np.random.default_rng(mask_seed)`` only, so
    every run and every rank sees the same masks. Images without
    ``mask_seed`` pass unchanged. Arguments as :class:`RandomFaceMask`
    (``prob`` and ``seed`` are unused).
    """

    def __init__(self, **kwargs) -> None:
        kwargs.pop('prob', None)
        kwargs.pop('seed', None)
        super().__init__(prob=1.0, seed=None, **kwargs)

    def transform(self, results: dict) -> dict:
        seed = results.get('mask_seed')
        if seed is None:
            results['face_mask'] = None
            return results
        return self._draw(results, np.random.default_rng(seed))

"""Image-level effects of a synthetic face photo.

The background (flat, gradient, blotches or panels) painted before the face,
and the photometric chain applied after it: blur, lighting (per-channel
gain and offset, directional ramp) and sensor noise cropped from a fixed
noise bank, so a render stays a pure function of its inputs.
"""
import math
from typing import Optional, Tuple

import cv2
import numpy as np

from .nuisance import BACKGROUNDS, FaceNuisance

__all__ = ['render_background', 'apply_photometrics']

_GRID_CACHE = {}


def _grid(size: int) -> Tuple[np.ndarray, np.ndarray]:
    g = _GRID_CACHE.get(size)
    if g is None:
        r = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / (size / 2)
        g = (r[None, :].repeat(size, 0), r[:, None].repeat(size, 1))
        _GRID_CACHE[size] = g
    return g


def render_background(size: int, nui: FaceNuisance,
                rng: Optional[np.random.Generator]) -> np.ndarray:
    base = np.array(nui.bg_color, np.float32)
    kind = BACKGROUNDS[nui.background]
    amp = nui.bg_texture
    if kind == 'flat' or amp <= 0 or rng is None:
        img = np.empty((size, size, 3), np.uint8)
        img[:] = np.clip(np.round(base), 0, 255).astype(np.uint8)
        return img
    if kind in ('gradient', 'blotches'):
        g = 2 if kind == 'gradient' else 5
        lum = rng.normal(0.0, 35.0 * amp, (g, g, 1))
        chroma = rng.normal(0.0, 15.0 * amp, (g, g, 3))
        small = (base + lum + chroma).astype(np.float32)
        interp = cv2.INTER_LINEAR if g == 2 else cv2.INTER_CUBIC
        big = cv2.resize(small, (size, size), interpolation=interp)
        return np.clip(big + 0.5, 0, 255).astype(np.uint8)
    # shapes: a few axis-aligned panels (doors, windows, shelves)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = np.clip(np.round(base), 0, 255).astype(np.uint8)
    for _ in range(4):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.15, 0.6, 2) * size
        c = base + rng.normal(0.0, 40.0 * amp) + rng.normal(0, 15 * amp, 3)
        c = np.clip(c, 0, 255)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)),
                      tuple(float(x) for x in c), -1)
    return img


_NOISE_CACHE = {}


def _noise_bank(size: int) -> np.ndarray:
    """A fixed bank of RGB sensor noise (unit luma std) to crop from.

    Correlated luma plus weaker independent chroma noise. Its content
    depends only on ``size``, so rendering stays deterministic.
    """
    side = max(256, 2 * size)
    bank = _NOISE_CACHE.get(side)
    if bank is None:
        g = np.random.default_rng(side).standard_normal((side, side, 4),
                                                        np.float32)
        bank = np.ascontiguousarray(0.8 * g[..., 3:] + 0.45 * g[..., :3])
        _NOISE_CACHE[side] = bank
    return bank


def apply_photometrics(img: np.ndarray, nui: FaceNuisance,
                 rng: Optional[np.random.Generator], k: float) -> np.ndarray:
    """Blur, lighting (gain, offset, directional ramp) and sensor noise."""
    need = (nui.contrast != 1.0 or nui.brightness != 0.0
            or tuple(nui.color_cast) != (1.0, 1.0, 1.0)
            or nui.light_strength > 0 or nui.blur_sigma > 0
            or nui.noise_sigma > 0)
    if not need:
        return img
    if nui.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), nui.blur_sigma * k)
    cast = nui.color_cast
    gain = [c * nui.contrast for c in cast]
    offset = [c * (128.0 * (1.0 - nui.contrast) + nui.brightness)
              for c in cast]
    f = img.astype(np.float32)
    if nui.light_strength > 0:
        gx, gy = _grid(img.shape[0])
        a = math.radians(nui.light_dir)
        ramp = 1.0 + nui.light_strength * (math.cos(a) * gx +
                                           math.sin(a) * gy)
        mul = cv2.merge([ramp * np.float32(g) for g in gain])
        add = cv2.merge([ramp * np.float32(o) for o in offset])
        f = cv2.add(cv2.multiply(f, mul), add)
    else:
        f = cv2.add(cv2.multiply(f, (*gain, 0.0)), (*offset, 0.0))
    if nui.noise_sigma > 0 and rng is not None:
        h, w = img.shape[:2]
        bank = _noise_bank(h)
        oy, ox = rng.integers(0, len(bank) - h + 1, 2)
        f = cv2.scaleAdd(bank[oy:oy + h, ox:ox + w], nui.noise_sigma, f)
    f += 0.5
    np.clip(f, 0, 255, out=f)
    return f.astype(np.uint8)

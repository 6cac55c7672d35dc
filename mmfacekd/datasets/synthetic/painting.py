"""Painting of a synthetic face: polygons through the pose, part by part.

:class:`Painter` queues reference-frame (112x112) polygons and polylines and
draws them anti-aliased through the pose warp (yaw parallax on an
ellipsoidal head, then the in-plane similarity and the output scaling; see
:mod:`.face_renderer` for the exact conventions). :func:`paint_face` draws a
whole person, part by part, in back-to-front order and returns the exact
landmarks of the painted image.
"""
import math
from typing import List

import cv2
import numpy as np

from mmfacekd.structures.face_template import ARCFACE_TEMPLATE_112

from .identity import (
    BEARD_STYLES,
    GLASSES_STYLES,
    HAIR_STYLES,
    Color,
    FaceIdentity,
    mix_color,
)
from .nuisance import OCCLUDERS, FaceNuisance

__all__ = ['Painter', 'paint_face']

_CX = 56.0  # face midline and pose centre (x and y)
_TPL = ARCFACE_TEMPLATE_112.astype(np.float64)

# ----------------------------------------------------------------------------
# Drawing helpers
# ----------------------------------------------------------------------------



_UNIT_CIRCLES = {}


def _ellipse(cx: float,
             cy: float,
             rx: float,
             ry: float,
             t0: float = 0.0,
             t1: float = 2 * math.pi,
             n: int = 20,
             angle: float = 0.0,
             closed: bool = True) -> np.ndarray:
    """Points on an (arc of an) ellipse, angles in radians, y down."""
    if closed and t0 == 0.0 and t1 == 2 * math.pi:
        cs = _UNIT_CIRCLES.get(n)
        if cs is None:
            t = np.linspace(t0, t1, n, endpoint=False)
            cs = _UNIT_CIRCLES[n] = (np.cos(t), np.sin(t))
        c, s = cs
    else:
        t = np.linspace(t0, t1, n, endpoint=not closed)
        c, s = np.cos(t), np.sin(t)
    x, y = rx * c, ry * s
    if angle:
        ca, sa = math.cos(angle), math.sin(angle)
        x, y = ca * x - sa * y, sa * x + ca * y
    out = np.empty((n, 2))
    out[:, 0] = cx + x
    out[:, 1] = cy + y
    return out


def _superellipse(cx: float, cy: float, a: float, b: float, p: float,
                  n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / p
    x = a * np.sign(c) * np.abs(c)**e
    y = b * np.sign(s) * np.abs(s)**e
    return np.stack([cx + x, cy + y], axis=1)


def _shade(c: Color, f: float) -> Color:
    return (min(255.0, c[0] * f), min(255.0, c[1] * f), min(255.0, c[2] * f))


class Painter:
    """Draws reference-frame polygons onto the image through the pose."""

    def __init__(self, img: np.ndarray, idt: FaceIdentity, nui: FaceNuisance,
                 k: float) -> None:
        self.img = img
        self.k = k
        yaw = math.radians(nui.yaw)
        self.cy_, self.sy_ = math.cos(yaw), math.sin(yaw)
        self.rx = idt.face_rx
        self.rz = 0.8 * idt.face_rx
        eye_x = 17.6 + idt.eye_dx
        self.z_ref = self._surf(np.array([eye_x]))[0]
        a = math.radians(nui.angle)
        ca, sa = nui.scale * math.cos(a), nui.scale * math.sin(a)
        # p' = R (p - c) + c + t, on-screen CCW rotation (y down)
        tx = _CX - ca * _CX - sa * _CX + nui.shift[0]
        ty = _CX + sa * _CX - ca * _CX + nui.shift[1]
        self.m = np.array([[ca, sa, tx], [-sa, ca, ty]], np.float64) * k
        self.lscale = k * nui.scale
        self._pts: List[np.ndarray] = []
        self._ops: list = []

    def _surf(self, xr: np.ndarray) -> np.ndarray:
        return self.rz * np.sqrt(np.clip(1.0 - (xr / self.rx)**2, 0.0, None))

    def warp(self, pts: np.ndarray, surf=True, extra=0.0) -> np.ndarray:
        """Reference-frame points (N, 2) -> output pixel coordinates.

        ``surf`` (bool or per-point bool array): whether the points lie on
        the head surface (else depth 0); ``extra``: additional depth.
        """
        x, y = pts[:, 0], pts[:, 1]
        if self.sy_ != 0.0:
            xr = x - _CX
            zz = self._surf(xr) * surf + extra
            x = _CX + xr * self.cy_ + (zz - self.z_ref) * self.sy_
        m = self.m
        out = np.empty_like(pts, dtype=np.float64)
        out[:, 0] = m[0, 0] * x + m[0, 1] * y + m[0, 2]
        out[:, 1] = m[1, 0] * x + m[1, 1] * y + m[1, 2]
        return out

    def fill(self,
             pts: np.ndarray,
             color: Color,
             surf: bool = True,
             extra: float = 0.0) -> None:
        """Queue a filled polygon."""
        self._pts.append(pts)
        self._ops.append((len(pts), surf, extra, color, 0, False))

    def line(self,
             pts: np.ndarray,
             color: Color,
             thickness: float = 1.0,
             surf: bool = True,
             extra: float = 0.0,
             closed: bool = False) -> None:
        """Queue an anti-aliased polyline."""
        t = max(1, int(round(thickness * self.lscale)))
        self._pts.append(pts)
        self._ops.append((len(pts), surf, extra, color, t, closed))

    def flush(self) -> None:
        """Warp all queued points at once and draw them in order."""
        if not self._pts:
            return
        pts = np.concatenate(self._pts)
        ops = self._ops
        if self.sy_ != 0.0:
            counts = [o[0] for o in ops]
            surf = np.repeat(np.array([o[1] for o in ops], np.float64),
                             counts)
            extra = np.repeat(np.array([o[2] for o in ops], np.float64),
                              counts)
        else:
            surf, extra = 1.0, 0.0
        q = np.round(self.warp(pts, surf, extra) * 16.0).astype(np.int32)
        img, i = self.img, 0
        for n, _, _, color, t, closed in ops:
            poly = q[i:i + n]
            i += n
            if t == 0:
                cv2.fillPoly(img, [poly], color, cv2.LINE_AA, 4)
            else:
                cv2.polylines(img, [poly], closed, color, t, cv2.LINE_AA, 4)
        self._pts, self._ops = [], []


# ----------------------------------------------------------------------------
# Face parts
# ----------------------------------------------------------------------------




def _face_outline(idt: FaceIdentity, n: int = 44) -> np.ndarray:
    """Head outline, starting at the right cheek, through the chin."""
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    low = s > 0
    sp = np.clip(s, 0.0, None)
    xs = np.where(low, np.sign(c) * np.abs(c)**idt.jaw_square, c)
    x = _CX + idt.face_rx * xs * (1.0 - idt.jaw_taper * sp**2)
    y = idt.face_cy + np.where(low, idt.face_bottom, idt.face_top) * s
    return np.stack([x, y], axis=1)


def _half_width_at(outline: np.ndarray, y: float) -> float:
    """Half-width of the face at height ``y``."""
    right = outline[outline[:, 0] >= _CX - 1e-6]
    order = np.argsort(right[:, 1])
    return float(np.interp(y, right[order, 1], right[order, 0]) - _CX)


def _rim_below(outline: np.ndarray, y: float) -> np.ndarray:
    """Outline below height ``y``, from the right side through the chin."""
    n = len(outline)
    ring = np.roll(outline, -(3 * n // 4), axis=0)  # starts at the top
    rim = ring[ring[:, 1] > y]
    hw = _half_width_at(outline, y)
    return np.concatenate([[[_CX + hw, y]], rim, [[_CX - hw, y]]])


def _hair_cap(idt: FaceIdentity, y_side: float, inner_y, vol: float,
              n: int = 25) -> np.ndarray:
    """Front hair polygon: outer arc over the head, inner edge ``inner_y``.

    ``inner_y`` maps u in [-1, 1] (across the forehead) to a y.
    """
    ry = idt.face_top + vol
    rx = idt.face_rx + vol
    s = float(np.clip((y_side - idt.face_cy) / ry, -0.95, 0.95))
    ta = math.pi - math.asin(s)
    tb = 2 * math.pi + math.asin(s)
    outer = _ellipse(_CX, idt.face_cy, rx, ry, ta, tb, n, closed=False)
    u = np.linspace(1.0, -1.0, n)
    inner = np.stack([_CX + u * idt.face_rx * 0.99, inner_y(u)], axis=1)
    return np.concatenate([outer, inner])


def _draw_back_hair(p: Painter, idt: FaceIdentity) -> None:
    style = HAIR_STYLES[idt.hair_style]
    col = idt.hair_color
    v = idt.hair_volume
    if style == 'long':
        arc = _ellipse(_CX, idt.face_cy, idt.face_rx + v + 3,
                       idt.face_top + v, math.pi, 2 * math.pi, 16)
        w = idt.face_rx + v + 6
        pts = np.concatenate(
            [arc, [[_CX + w, 100], [_CX + w - 4, 130], [_CX - w + 4, 130],
                   [_CX - w, 100]]])
        p.fill(pts, _shade(col, 0.8), surf=False)
    elif style == 'curly':
        t = np.linspace(0.0, 2 * math.pi, 60, endpoint=False)
        r = 1.0 + 0.06 * np.cos(13 * t + 7 * idt.hair_part)
        pts = np.stack([
            _CX + (idt.face_rx + 5 + v) * r * np.cos(t),
            idt.face_cy - 4 + (idt.face_top + 2 + v) * r * np.sin(t)
        ], 1)
        pts = pts[pts[:, 1] < 88]
        p.fill(pts, _shade(col, 0.85), surf=False)
    elif style == 'bun':
        p.fill(_ellipse(_CX + 8 * idt.hair_part,
                        idt.face_cy - idt.face_top - 4, 11, 9), col, False)
    elif style == 'bangs':
        arc = _ellipse(_CX, idt.face_cy, idt.face_rx + v + 2,
                       idt.face_top + v, math.pi, 2 * math.pi, 16)
        w = idt.face_rx + v + 2
        pts = np.concatenate([arc, [[_CX + w, 78], [_CX - w, 78]]])
        p.fill(pts, _shade(col, 0.8), surf=False)


def _draw_front_hair(p: Painter, idt: FaceIdentity) -> None:
    style = HAIR_STYLES[idt.hair_style]
    col = idt.hair_color
    v = idt.hair_volume
    hl = idt.hairline
    ys = idt.face_cy - 14.0  # temple height
    part = idt.hair_part
    cap = None
    if style in ('short', 'long', 'bun'):
        vol = v if style != 'bun' else 1.0
        cap = _hair_cap(idt, ys,
                        lambda u: hl + (ys - hl) * np.abs(u)**3.0, vol)
    elif style == 'buzz':
        col = mix_color(col, idt.skin_color, 0.45)
        cap = _hair_cap(idt, ys,
                        lambda u: hl + (ys - hl) * np.abs(u)**3.0, 0.5)
    elif style == 'bangs':
        by = idt.face_cy - 22.0 - 0.5 * v

        def inner(u):
            zig = 1.6 * np.abs(np.sin(u * 9.0 + 3 * part))
            return np.where(np.abs(u) < 0.8, by + zig,
                            by + (idt.face_cy + 8 - by) *
                            np.clip((np.abs(u) - 0.8) / 0.2, 0, 1)**1.5)

        cap = _hair_cap(idt, idt.face_cy + 8, inner, v)
    elif style == 'receding':
        hh = hl - 4.0

        def inner(u):
            m = 5.0 * np.exp(-(u / 0.18)**2)  # widow's peak
            return hh + m - 6.0 * np.sin(np.pi * np.abs(u))**2 + \
                (ys - hh) * np.abs(u)**4

        cap = _hair_cap(idt, ys, inner, min(v, 2.5))
    elif style == 'curly':
        cap = _hair_cap(
            idt, ys, lambda u: hl + 3 * np.abs(np.sin(u * 7.0)) +
            (ys - hl) * np.abs(u)**3, v + 3)
    elif style == 'side_part':
        s = 1.0 if part >= 0 else -1.0

        def inner(u):
            sweep = 9.0 * np.clip((s * u + 0.6) / 1.6, 0.0, 1.0)**1.5
            return hl - 2 + sweep + (ys - hl) * np.abs(u)**4

        cap = _hair_cap(idt, ys, inner, v + 1)
    elif style == 'bald':
        if v > 3.0:  # fringes of hair above the ears
            cy, ry = idt.face_cy, idt.face_top
            t0 = math.asin((ys - 8.0 - cy) / ry)
            t1 = math.asin(6.0 / ry)
            fr = mix_color(col, idt.skin_color, 0.25)
            taper = 1.0 + 4.5 * np.sin(np.linspace(0.0, math.pi, 9))
            for t_a, t_b in ((t0, t1), (math.pi - t1, math.pi - t0)):
                outer = _ellipse(_CX, cy, idt.face_rx + 1.0, ry + 1.0, t_a,
                                 t_b, 9, closed=False)
                t = np.linspace(t_a, t_b, 9)
                inner = outer - taper[:, None] * np.stack(
                    [np.cos(t), np.sin(t)], 1)
                p.fill(np.concatenate([outer, inner[::-1]]), fr, surf=False)
    if cap is not None:
        p.fill(cap, col, surf=False)
        if style not in ('buzz', ):  # a few strands
            top = np.array([_CX + part * 14.0, idt.face_cy - idt.face_top])
            dark = _shade(col, 0.82)
            ni = len(cap) // 2
            for j in (5, 12, 19):
                q = cap[ni + j]
                mid = 0.5 * (top + q) + np.array([(q[0] - top[0]) * 0.15,
                                                    -3.0])
                p.line(np.stack([top, mid, q - np.array([0, 2.0])]), dark,
                       1.0, surf=False)
    if style == 'long':  # locks framing the face
        for sgn in (-1.0, 1.0):
            x0 = _CX + sgn * (idt.face_rx + 1)
            pts = np.array([[x0, ys - 2], [x0 - sgn * (6 + v), ys + 4],
                            [x0 - sgn * 4.0, idt.face_cy + 24],
                            [x0 + sgn * 2.0, idt.face_cy + 40],
                            [x0 + sgn * 6.0, idt.face_cy + 20]])
            p.fill(pts, col, surf=False)


def _draw_eye(p: Painter, idt: FaceIdentity, nui: FaceNuisance,
              c: np.ndarray, side: float) -> None:
    ew = idt.eye_width
    eh = idt.eye_height * (1.0 - 0.92 * nui.blink)
    slope = math.tan(math.radians(idt.eye_tilt))
    u = np.linspace(-1.0, 1.0, 11)
    x = u * ew
    shear = -slope * x * side
    lash_col = mix_color(idt.brow_color, (15, 10, 10), 0.6)
    lid_col = _shade(idt.skin_color, 0.93)
    if eh < 0.8:  # closed: just the lid line
        y = shear + 0.6 * (1.0 - u**2)
        p.line(np.stack([c[0] + x, c[1] + y], 1), lash_col, idt.lash)
        return
    top = shear - eh * (1.0 - u**2)**0.6
    bot = shear + 0.75 * eh * (1.0 - u**2)**0.8
    top_pts = np.stack([c[0] + x, c[1] + top], 1)
    bot_pts = np.stack([c[0] + x, c[1] + bot], 1)
    sclera = np.concatenate([top_pts, bot_pts[::-1]])
    p.fill(sclera, mix_color(idt.skin_color, (245, 245, 245), 0.8))
    ir = idt.iris_radius
    ic = (c[0] + nui.gaze[0], c[1] + nui.gaze[1] + 0.2)
    p.fill(_ellipse(ic[0], ic[1], ir, ir, n=14), idt.iris_color)
    p.fill(_ellipse(ic[0], ic[1], 0.45 * ir, 0.45 * ir, n=10), (20, 15, 15))
    # skin masks that clip the iris to the opening
    off = ir + 1.5
    up = top_pts - np.array([0.0, off])
    p.fill(np.concatenate([top_pts, up[::-1]]), lid_col)
    dn = bot_pts + np.array([0.0, off])
    p.fill(np.concatenate([bot_pts, dn[::-1]]), idt.skin_color)
    p.line(top_pts, lash_col, idt.lash)
    crease = top_pts[2:9] - np.array([0.0, 1.2 + 0.35 * eh])
    p.line(crease, _shade(idt.skin_color, 0.78), 1.0)


def _draw_brow(p: Painter, idt: FaceIdentity, nui: FaceNuisance,
               eye: np.ndarray, side: float) -> None:
    u = np.linspace(0.0, 1.0, 9)
    length = 2.0 * idt.eye_width * idt.brow_length
    x = eye[0] - side * idt.eye_width * 1.0 + side * u * length
    base = eye[1] - idt.brow_height - 2.5 * nui.brow_raise
    y = base - idt.brow_arch * np.sin(np.pi * np.clip(u * 1.1, 0, 1)) - \
        math.tan(math.radians(idt.brow_angle)) * (u - 0.3) * length
    th = idt.brow_thickness * (1.0 - 0.5 * u**1.5)
    top = np.stack([x, y - 0.6 * th], 1)
    bot = np.stack([x, y + 0.4 * th], 1)
    p.fill(np.concatenate([top, bot[::-1]]), idt.brow_color)


def _draw_nose(p: Painter, idt: FaceIdentity, tip: np.ndarray,
               eye_y: float) -> None:
    skin = idt.skin_color
    nw = idt.nose_width
    dep = idt.nose_depth
    # bridge shadow (left side)
    t = np.linspace(0.0, 1.0, 6)[:, None]
    a = np.array([_CX - 3.5, eye_y + 1.0 + 8 * (1 - idt.nose_bridge)])
    b = np.array([tip[0] - 0.55 * nw, tip[1] - 3.5])
    bridge = (1 - t) * a + t * b + np.hstack([-1.2 * np.sin(np.pi * t),
                                             0 * t])
    p.line(bridge, _shade(skin, 0.84), 1.0, extra=0.5 * dep)
    # shadow under the nose
    p.fill(_ellipse(tip[0], tip[1] + 2.2, 0.85 * nw, 2.3, n=16),
           _shade(skin, 0.9), extra=0.5 * dep)
    # alae
    for s in (-1.0, 1.0):
        arc = _ellipse(tip[0] + s * 0.72 * nw, tip[1] - 0.3, 0.3 * nw, 2.6,
                       math.pi * (0.5 - 0.6 * s), math.pi * (0.5 + 0.6 * s),
                       7, closed=False)
        p.line(arc, _shade(skin, 0.72), 1.0, extra=0.6 * dep)
    # tip highlight, nostrils
    p.fill(_ellipse(tip[0], tip[1] - 1.0, 2.2 * idt.nose_round,
                    1.6 * idt.nose_round, n=12), _shade(skin, 1.06),
           extra=dep)
    for s in (-1.0, 1.0):
        p.fill(_ellipse(tip[0] + s * 0.38 * nw, tip[1] + 1.6,
                        0.13 * nw + 0.4, 0.9, n=10, angle=-s * 0.35),
               _shade(skin, 0.45), extra=0.7 * dep)


def _mouth_geometry(idt: FaceIdentity, nui: FaceNuisance,
                    lm: np.ndarray, rm: np.ndarray):
    u = np.linspace(-1.0, 1.0, 13)
    w = 1.0 - u**2
    xs = 0.5 * (lm[0] + rm[0]) + u * 0.5 * (rm[0] - lm[0])
    yc = 0.5 * (lm[1] + rm[1]) + u * 0.5 * (rm[1] - lm[1])
    curve = idt.mouth_curve + 2.5 * nui.smile
    line = yc + curve * w
    bow = 1.0 - 0.35 * np.exp(-(u / 0.18)**2)
    upper = line - idt.upper_lip * w**0.5 * bow
    gap = nui.mouth_open * 7.0 * w**0.8
    lower_top = line + gap
    lower_bot = lower_top + idt.lower_lip * w**0.6
    return xs, line, upper, lower_top, lower_bot


def _draw_mouth(p: Painter, idt: FaceIdentity, nui: FaceNuisance,
                lm: np.ndarray, rm: np.ndarray) -> None:
    xs, line, upper, lower_top, lower_bot = _mouth_geometry(idt, nui, lm, rm)
    ex = 3.0
    lip = idt.lip_color
    if nui.mouth_open > 0.05:
        inside = np.concatenate([np.stack([xs, line], 1),
                                 np.stack([xs, lower_top], 1)[::-1]])
        p.fill(inside, (60, 20, 25), extra=ex)
        teeth_bot = line + 0.45 * (lower_top - line)
        teeth = np.concatenate([np.stack([xs, line], 1)[2:-2],
                                np.stack([xs, teeth_bot], 1)[2:-2][::-1]])
        p.fill(teeth, (238, 234, 225), extra=ex)
    p.fill(np.concatenate([np.stack([xs, upper], 1),
                           np.stack([xs, line], 1)[::-1]]),
           _shade(lip, 0.9), extra=ex)
    p.fill(np.concatenate([np.stack([xs, lower_top], 1),
                           np.stack([xs, lower_bot], 1)[::-1]]),
           lip, extra=ex)
    p.line(np.stack([xs, line], 1), _shade(lip, 0.55), 1.0, extra=ex)


def _draw_beard(p: Painter, idt: FaceIdentity, outline: np.ndarray,
                le: np.ndarray, tip: np.ndarray, lm: np.ndarray,
                rm: np.ndarray) -> None:
    style = BEARD_STYLES[idt.beard]
    col = idt.beard_color
    my = 0.5 * (lm[1] + rm[1])
    if style in ('full', 'stubble'):
        if style == 'stubble':
            col = mix_color(idt.skin_color, col, 0.3)
        ys = le[1] + 6.0
        hs = _half_width_at(outline, ys)
        hm = _half_width_at(outline, tip[1] + 8.0)
        rim = _rim_below(outline, ys)  # right -> chin -> left
        top = np.array([[_CX - hs + 5.0, ys + 1.0],
                        [_CX - 0.8 * hm, tip[1] + 8.0],
                        [lm[0] - 3.0, my - 1.0], [lm[0] - 0.5, my + 1.5],
                        [rm[0] + 0.5, my + 1.5], [rm[0] + 3.0, my - 1.0],
                        [_CX + 0.8 * hm, tip[1] + 8.0],
                        [_CX + hs - 5.0, ys + 1.0]])
        p.fill(np.concatenate([rim, top]), col)
    elif style == 'goatee':
        yg = my + idt.lower_lip + 1.5
        gw = 0.3 * (rm[0] - lm[0]) + 1.0
        rim = _rim_below(outline, yg)
        rim = rim[np.abs(rim[:, 0] - _CX) <= gw][1:-1]
        if len(rim):
            pts = np.concatenate([[[_CX + gw, yg]], rim, [[_CX - gw, yg]]])
            p.fill(pts, col, extra=2.0)


def _draw_moustache(p: Painter, idt: FaceIdentity, nui: FaceNuisance,
                    tip: np.ndarray, lm: np.ndarray, rm: np.ndarray) -> None:
    if BEARD_STYLES[idt.beard] not in ('moustache', 'goatee', 'full'):
        return
    xs, _, upper, _, _ = _mouth_geometry(idt, nui, lm, rm)
    u = np.linspace(-1.0, 1.0, len(xs))
    bot = upper - 0.2
    thick = 2.5 + 0.4 * idt.hair_volume
    top = np.maximum(bot - thick * (1.0 - 0.6 * u**2), tip[1] + 3.0)
    ends_l = [[lm[0] - 1.5, lm[1] + 2.5]]
    ends_r = [[rm[0] + 1.5, rm[1] + 2.5]]
    pts = np.concatenate([ends_l, np.stack([xs, top], 1), ends_r,
                          np.stack([xs, bot], 1)[::-1]])
    p.fill(pts, idt.beard_color, extra=3.0)


def _draw_glasses(p: Painter, idt: FaceIdentity, le: np.ndarray,
                  re: np.ndarray, color: Color, thick: float,
                  filled: bool, square: bool) -> None:
    pw = 4.5 if square else 2.0
    a = idt.eye_width + 3.5
    b = max(idt.eye_height + 4.0, 6.5)
    ex = 4.0
    for c, s in ((le, -1.0), (re, 1.0)):
        rim = _superellipse(c[0], c[1] + 0.5, a, b, pw, 24)
        if filled:
            p.fill(rim, color, extra=ex)
        else:
            p.line(rim, color, thick, extra=ex, closed=True)
        temple = np.array([[c[0] + s * a, c[1] - 1.0],
                           [_CX + s * idt.face_rx * 0.98, c[1] - 2.0]])
        p.line(temple, color, thick, extra=ex)
    bridge = np.array([[le[0] + a, le[1] - 0.5], [_CX, le[1] - 2.0],
                       [re[0] - a, re[1] - 0.5]])
    p.line(bridge, color, thick, extra=ex)


def _draw_occluder(p: Painter, idt: FaceIdentity, nui: FaceNuisance,
                   outline: np.ndarray, le: np.ndarray, re: np.ndarray,
                   tip: np.ndarray) -> None:
    kind = OCCLUDERS[nui.occluder]
    col = nui.occ_color
    if kind == 'sunglasses':
        _draw_glasses(p, idt, le, re, col, 1.5, True, nui.occ_size[0] > 29)
    elif kind == 'mask':
        y0 = tip[1] - 7.0
        hw = _half_width_at(outline, y0 + 4)
        rim = _rim_below(outline, y0 + 4)  # right -> chin -> left
        top = np.array([[_CX - 8, y0], [_CX, y0 - 1.0], [_CX + 8, y0]])
        p.fill(np.concatenate([top, rim]), col, extra=6.0)
        for dy in (6.0, 12.0, 18.0):
            yy = y0 + dy
            w = _half_width_at(outline, yy) - 3.0
            if w > 3:
                p.line(np.array([[_CX - w, yy], [_CX + w, yy]]),
                       _shade(col, 0.85), 1.0, extra=6.0)
        for s in (-1.0, 1.0):
            p.line(np.array([[_CX + s * hw, y0 + 4],
                             [_CX + s * idt.face_rx, tip[1] - 12]]),
                   _shade(col, 0.8), 1.0, surf=False)
        return
    # rect / hand live in front of the camera: only the output scaling
    p.flush()
    k = p.k
    cx, cy = nui.occ_center
    w, h = nui.occ_size
    a = math.radians(nui.occ_angle)
    ca, sa = math.cos(a), math.sin(a)
    if kind == 'rect':
        box = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) * 0.5
        rot = np.stack([box[:, 0] * ca - box[:, 1] * sa + cx,
                        box[:, 0] * sa + box[:, 1] * ca + cy], 1)
        q = np.round(rot * k * 16.0).astype(np.int32)
        cv2.fillPoly(p.img, [q], col, cv2.LINE_AA, 4)
    elif kind == 'hand':
        palm = _ellipse(cx, cy, 0.42 * w, 0.3 * w, n=18, angle=a)
        q = np.round(palm * k * 16.0).astype(np.int32)
        cv2.fillPoly(p.img, [q], col, cv2.LINE_AA, 4)
        # fingers along the palm's x axis, spread along its y axis
        fw = max(1, int(round(0.11 * w * k)))
        for j, (off, ln) in enumerate(((-0.75, 0.55), (-0.25, 0.7),
                                       (0.25, 0.65), (0.7, 0.5))):
            bx = cx + ca * 0.3 * w - sa * off * 0.27 * w
            by = cy + sa * 0.3 * w + ca * off * 0.27 * w
            ex_, ey_ = bx + ca * ln * w, by + sa * ln * w
            q = np.round(np.array([[bx, by], [ex_, ey_]]) * k * 16.0)
            cv2.polylines(p.img, [q.astype(np.int32)], False, col, fw,
                          cv2.LINE_AA, 4)
        q = np.round(np.array([[cx - sa * 0.25 * w, cy + ca * 0.25 * w],
                               [cx + (0.2 * ca - 0.6 * sa) * w,
                                cy + (0.2 * sa + 0.6 * ca) * w]]) * k * 16.)
        cv2.polylines(p.img, [q.astype(np.int32)], False, _shade(col, 0.95),
                      fw, cv2.LINE_AA, 4)


# ----------------------------------------------------------------------------
# The whole face
# ----------------------------------------------------------------------------


def paint_face(p: Painter, idt: FaceIdentity,
               nui: FaceNuisance) -> np.ndarray:
    """Draw the whole person (body, head, face parts, hair, glasses and the
    occluder) onto ``p.img`` and flush it.

    Args:
        p (Painter): painter over the background image, built for ``idt``
            and ``nui``.
        idt (FaceIdentity): who.
        nui (FaceNuisance): the per-image conditions (pose, expression,
            occluder; lighting and sensor effects are not painted here).

    Returns:
        np.ndarray: the ``(5, 2)`` float32 landmarks (left eye, right eye,
        nose tip, left and right mouth corner) in output pixels, warped
        exactly like the parts they belong to.
    """
    # canonical landmarks (identity + expression)
    le = _TPL[0] + (-idt.eye_dx, idt.eye_dy)
    re = _TPL[1] + (idt.eye_dx, idt.eye_dy)
    tip = _TPL[2] + (0.0, idt.nose_dy)
    sm = nui.smile
    lm = _TPL[3] + (-idt.mouth_dx - 1.5 * sm, idt.mouth_dy - 1.8 * sm)
    rm = _TPL[4] + (idt.mouth_dx + 1.5 * sm, idt.mouth_dy - 1.8 * sm)
    skin = idt.skin_color
    outline = _face_outline(idt)
    style = HAIR_STYLES[idt.hair_style]

    # body
    rx = idt.face_rx
    chin = idt.face_cy + idt.face_bottom
    shirt = np.array([[_CX - 0.55 * rx, chin - 6], [_CX - 2.6 * rx, chin + 14],
                      [_CX - 2.6 * rx, 140], [_CX + 2.6 * rx, 140],
                      [_CX + 2.6 * rx, chin + 14], [_CX + 0.55 * rx,
                                                    chin - 6]])
    p.fill(shirt, nui.shirt_color, surf=False, extra=-10.0)
    _draw_back_hair(p, idt)
    neck = np.array([[_CX - 0.5 * rx, idt.face_cy + 15],
                     [_CX - 0.52 * rx, 140], [_CX + 0.52 * rx, 140],
                     [_CX + 0.5 * rx, idt.face_cy + 15]])
    p.fill(neck, _shade(skin, 0.75), surf=False, extra=-5.0)
    if style not in ('long', 'bangs'):
        for s in (-1.0, 1.0):
            es = idt.ear_size
            ear = _ellipse(_CX + s * (rx - 1.0), le[1] + 11.0, 5.0 * es,
                           10.0 * es, n=16)
            p.fill(ear, _shade(skin, 0.92), surf=False, extra=-8.0)
            p.fill(_ellipse(_CX + s * (rx + 0.5), le[1] + 11.5, 2.2 * es,
                            6.0 * es, n=12), _shade(skin, 0.78), surf=False,
                   extra=-8.0)

    # face with a soft rim shadow
    p.fill(outline, _shade(skin, 0.94), surf=False)
    inner = (outline - (_CX, idt.face_cy)) * (0.9, 0.93) + \
        (_CX - 1.5, idt.face_cy - 2.0)
    p.fill(inner, skin, surf=False)
    if idt.blush > 0.02:
        blush = mix_color(skin, (230, 110, 110), 0.35 * idt.blush)
        for s in (-1.0, 1.0):
            p.fill(_ellipse(_CX + s * 22.0, tip[1] + 3.0, 7.0, 4.5, n=14),
                   blush)
    if idt.mole[2] > 0:
        p.fill(_ellipse(idt.mole[0], idt.mole[1], idt.mole[2], idt.mole[2],
                        n=10), _shade(skin, 0.42))
    _draw_beard(p, idt, outline, le, tip, lm, rm)
    _draw_nose(p, idt, tip, 0.5 * (le[1] + re[1]))
    _draw_mouth(p, idt, nui, lm, rm)
    _draw_moustache(p, idt, nui, tip, lm, rm)
    _draw_eye(p, idt, nui, le, -1.0)
    _draw_eye(p, idt, nui, re, 1.0)
    _draw_brow(p, idt, nui, le, -1.0)
    _draw_brow(p, idt, nui, re, 1.0)
    _draw_front_hair(p, idt)
    if idt.glasses:
        _draw_glasses(p, idt, le, re, idt.glasses_color,
                      idt.glasses_thickness, False,
                      GLASSES_STYLES[idt.glasses] == 'square')
    if nui.occluder:
        _draw_occluder(p, idt, nui, outline, le, re, tip)
    p.flush()

    # landmarks through the same warp as their parts
    lms = np.concatenate([
        p.warp(np.stack([le, re])),
        p.warp(tip[None], extra=idt.nose_depth),
        p.warp(np.stack([lm, rm]), extra=3.0)
    ])
    return lms.astype(np.float32)

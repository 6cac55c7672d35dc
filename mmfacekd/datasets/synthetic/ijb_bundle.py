"""A synthetic IJB-style template bundle (insightface layout).

Writes, under ``out_dir``::

    loose_crop/<i>.jpg                       unaligned crops (face pasted
                                             into a larger canvas with a
                                             random similarity transform)
    meta/<name>_name_5pts_score.txt          image x1 y1 ... x5 y5 score
    meta/<name>_face_tid_mid.txt             image template_id media_id
    meta/<name>_template_pair_label.txt      template1 template2 label
    meta.json                                counts and arguments

Each identity gets several templates; each template several media (a media
is one "video": its frames share pose and lighting but jitter a little) of
one or more images. Pairs: every genuine template pair plus impostor
template pairs (by default all of them). The landmarks are the renderer's
exact ones, moved with the image, so :class:`AlignFace` must undo the random
transform. Identities come from their own random stream, disjoint from the
other synthetic sets. Every image is a distinct render (no image is shared
by two templates, so genuine scores are not inflated by shared pixels).

Size: by default 150 identities with 3-6 templates each (seed 0: 691
templates, 1,339 genuine and 237,056 impostor template pairs, 2,128
images): TPR at FPR 1e-4 rests on ~24 false accepts, at 1e-3 on ~237; 1e-5
(2) is not meaningful (IJB-C: 23,124 templates, 19,557 genuine and 15.6M
impostor pairs). The random draws are
made in one sequential pass and the images rendered afterwards (on
``workers`` processes), so the output does not depend on ``workers``.
"""
import json
import os
import os.path as osp
from itertools import combinations
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from .face_renderer import render_face, sample_identity, sample_nuisance
from .synthetic_set import parallel_map

__all__ = ['write_ijb_bundle']

_IJB_STREAM = 53


def _random_similarity(rng: np.random.Generator, canvas: int) -> np.ndarray:
    """A (2, 3) map from the 112 crop into the canvas: scale, rotation,
    translation, keeping the face inside."""
    scale = rng.uniform(0.9, 1.4)
    angle = np.deg2rad(rng.uniform(-20, 20))
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)],
                            [np.sin(angle), np.cos(angle)]])
    centre = np.array([56.0, 56.0])
    room = canvas / 2 - 56 * scale * 1.1
    shift = rng.uniform(-max(room, 0), max(room, 0), 2)
    m = np.empty((2, 3))
    m[:, :2] = rot
    m[:, 2] = canvas / 2 + shift - rot @ centre
    return m


def _render_job(job) -> Tuple[bytes, np.ndarray]:
    """Render one frame, paste it into the canvas with the similarity ``m``;
    returns the JPEG and the renderer's exact landmarks in the 112 crop."""
    seed, ident, mid, f, difficulty, m, canvas, quality = job
    identity = sample_identity(np.random.default_rng(
        [seed, _IJB_STREAM, ident, 0]))
    if f == 0:  # a media's first frame: its own nuisance
        nuis = sample_nuisance(np.random.default_rng(
            [seed, _IJB_STREAM, ident, 1 + mid]), difficulty)
    else:  # the other frames jitter a little
        nuis = sample_nuisance(np.random.default_rng(
            [seed, _IJB_STREAM, ident, 1 + mid, f]), difficulty * 0.3)
    img, lms = render_face(identity, nuis)
    loose = cv2.warpAffine(img, m, (canvas, canvas), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(loose, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError('JPEG encoding failed')
    return buf.tobytes(), lms


def write_ijb_bundle(out_dir: str, name: str = 'ijbc', num_ids: int = 150,
                     templates_per_id: Tuple[int, int] = (3, 6),
                     media_per_template: Tuple[int, int] = (1, 2),
                     imgs_per_media: Tuple[int, int] = (1, 3),
                     impostor_ratio: Optional[int] = None,
                     canvas: int = 160, seed: int = 0,
                     difficulty: float = 1.0, quality: int = 90,
                     workers: int = 1) -> Dict[str, int]:
    """Write the bundle; returns (and saves) a summary.

    Args:
        out_dir (str): Output folder (created).
        name (str): Meta-file prefix and set name. Defaults to 'ijbc'.
        num_ids (int): Identities.
        templates_per_id, media_per_template, imgs_per_media (tuple):
            Inclusive (min, max) counts.
        impostor_ratio (int, optional): Impostor pairs per genuine pair (at
            most all impostor template pairs); None (default): every
            impostor template pair.
        canvas (int): Side of the loose crops.
        seed (int): Seed; the output is a pure function of the arguments.
        difficulty (float): Nuisance strength.
        quality (int): JPEG quality.
        workers (int): Rendering processes (the output does not depend on
            it).
    """
    os.makedirs(osp.join(out_dir, 'loose_crop'), exist_ok=True)
    os.makedirs(osp.join(out_dir, 'meta'), exist_ok=True)
    rng = np.random.default_rng([seed, _IJB_STREAM])
    jobs, scores, tid_lines = [], [], []
    templates_of = []  # per identity, its template ids
    tid = mid = img_i = 0
    # one sequential pass over the random draws (same order as rendering
    # frame by frame), then render
    for ident in range(num_ids):
        mine = []
        for _ in range(rng.integers(templates_per_id[0],
                                    templates_per_id[1] + 1)):
            for _ in range(rng.integers(media_per_template[0],
                                        media_per_template[1] + 1)):
                frames = rng.integers(imgs_per_media[0],
                                      imgs_per_media[1] + 1)
                for f in range(frames):
                    m = _random_similarity(rng, canvas)
                    scores.append(rng.uniform(0.6, 1.0))
                    jobs.append((seed, ident, mid, f, difficulty, m, canvas,
                                 quality))
                    tid_lines.append(f'{img_i}.jpg {tid} {mid}')
                    img_i += 1
                mid += 1
            mine.append(tid)
            tid += 1
        templates_of.append(mine)
    pts_lines = []
    for i, ((jpg, lms), job, score) in enumerate(zip(
            parallel_map(_render_job, jobs, workers), jobs, scores)):
        fname = f'{i}.jpg'
        with open(osp.join(out_dir, 'loose_crop', fname), 'wb') as f:
            f.write(jpg)
        m = job[5]
        pts = np.asarray(lms, np.float64) @ m[:, :2].T + m[:, 2]
        pts_lines.append(fname + ' ' + ' '.join(f'{v:.3f}'
                                                for v in pts.ravel())
                         + f' {score:.4f}')
    genuine = [(a, b) for ts in templates_of for a, b in combinations(ts, 2)]
    owner = np.repeat(np.arange(num_ids), [len(ts) for ts in templates_of])
    ta, tb = np.triu_indices(tid, 1)
    keep = owner[ta] != owner[tb]
    ta, tb = ta[keep], tb[keep]  # all impostor template pairs, sorted
    want = len(ta) if impostor_ratio is None else \
        min(impostor_ratio * len(genuine), len(ta))
    if want < len(ta):
        pick = np.sort(rng.choice(len(ta), want, replace=False))
        ta, tb = ta[pick], tb[pick]
    pair_lines = [f'{a} {b} 1' for a, b in genuine] + \
        [f'{a} {b} 0' for a, b in zip(ta.tolist(), tb.tolist())]
    meta = osp.join(out_dir, 'meta')
    for fname, lines in ((f'{name}_name_5pts_score.txt', pts_lines),
                         (f'{name}_face_tid_mid.txt', tid_lines),
                         (f'{name}_template_pair_label.txt', pair_lines)):
        with open(osp.join(meta, fname), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    summary = dict(name=name, num_ids=num_ids, num_images=img_i,
                   num_templates=tid, num_media=mid,
                   num_pairs=len(pair_lines), num_genuine=len(genuine),
                   num_impostor=len(pair_lines) - len(genuine), seed=seed,
                   difficulty=difficulty)
    with open(osp.join(out_dir, 'meta.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary

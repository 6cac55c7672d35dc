"""A small synthetic IJB-style template bundle (insightface layout).

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
one or more images. Pairs: every genuine template pair plus random impostor
template pairs. The landmarks are the renderer's exact ones, moved with the
image, so :class:`AlignFace` must undo the random transform. Identities come
from their own random stream, disjoint from the other synthetic sets.
"""
import json
import os
import os.path as osp
from itertools import combinations
from typing import Dict, Tuple

import cv2
import numpy as np

from .face_renderer import render_face, sample_identity, sample_nuisance

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


def write_ijb_bundle(out_dir: str, name: str = 'ijbc', num_ids: int = 40,
                     templates_per_id: Tuple[int, int] = (2, 3),
                     media_per_template: Tuple[int, int] = (1, 3),
                     imgs_per_media: Tuple[int, int] = (1, 3),
                     impostor_ratio: int = 150, canvas: int = 160,
                     seed: int = 0, difficulty: float = 1.0,
                     quality: int = 90) -> Dict[str, int]:
    """Write the bundle; returns (and saves) a summary.

    Args:
        out_dir (str): Output folder (created).
        name (str): Meta-file prefix and set name. Defaults to 'ijbc'.
        num_ids (int): Identities.
        templates_per_id, media_per_template, imgs_per_media (tuple):
            Inclusive (min, max) counts.
        impostor_ratio (int): Impostor pairs per genuine pair (at most all
            impostor template pairs).
        canvas (int): Side of the loose crops.
        seed (int): Seed; the output is a pure function of the arguments.
        difficulty (float): Nuisance strength.
        quality (int): JPEG quality.
    """
    os.makedirs(osp.join(out_dir, 'loose_crop'), exist_ok=True)
    os.makedirs(osp.join(out_dir, 'meta'), exist_ok=True)
    rng = np.random.default_rng([seed, _IJB_STREAM])
    pts_lines, tid_lines = [], []
    templates_of = []  # per identity, its template ids
    tid = mid = img_i = 0
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    for ident in range(num_ids):
        identity = sample_identity(np.random.default_rng(
            [seed, _IJB_STREAM, ident, 0]))
        mine = []
        for _ in range(rng.integers(templates_per_id[0],
                                    templates_per_id[1] + 1)):
            for _ in range(rng.integers(media_per_template[0],
                                        media_per_template[1] + 1)):
                base = sample_nuisance(np.random.default_rng(
                    [seed, _IJB_STREAM, ident, 1 + mid]), difficulty)
                frames = rng.integers(imgs_per_media[0],
                                      imgs_per_media[1] + 1)
                for f in range(frames):
                    nuis = base if f == 0 else sample_nuisance(
                        np.random.default_rng([seed, _IJB_STREAM, ident,
                                               1 + mid, f]), difficulty * 0.3)
                    img, lms = render_face(identity, nuis)
                    m = _random_similarity(rng, canvas)
                    loose = cv2.warpAffine(img, m, (canvas, canvas),
                                           flags=cv2.INTER_LINEAR,
                                           borderMode=cv2.BORDER_REFLECT)
                    pts = np.asarray(lms, np.float64) @ m[:, :2].T + m[:, 2]
                    fname = f'{img_i}.jpg'
                    if not cv2.imwrite(osp.join(out_dir, 'loose_crop', fname),
                                       cv2.cvtColor(loose, cv2.COLOR_RGB2BGR),
                                       params):
                        raise OSError(f'could not write {fname} in {out_dir}')
                    score = rng.uniform(0.6, 1.0)
                    pts_lines.append(
                        fname + ' ' + ' '.join(f'{v:.3f}' for v in pts.ravel())
                        + f' {score:.4f}')
                    tid_lines.append(f'{fname} {tid} {mid}')
                    img_i += 1
                mid += 1
            mine.append(tid)
            tid += 1
        templates_of.append(mine)
    genuine = [(a, b) for ts in templates_of for a, b in combinations(ts, 2)]
    owner = {t: i for i, ts in enumerate(templates_of) for t in ts}
    all_impostors = [(a, b) for a, b in combinations(range(tid), 2)
                     if owner[a] != owner[b]]
    want = min(impostor_ratio * len(genuine), len(all_impostors))
    pick = rng.choice(len(all_impostors), want, replace=False)
    impostors = {all_impostors[i] for i in pick}
    pairs = [(a, b, 1) for a, b in genuine] + \
        [(a, b, 0) for a, b in sorted(impostors)]
    meta = osp.join(out_dir, 'meta')
    for fname, lines in ((f'{name}_name_5pts_score.txt', pts_lines),
                         (f'{name}_face_tid_mid.txt', tid_lines),
                         (f'{name}_template_pair_label.txt',
                          [f'{a} {b} {y}' for a, b, y in pairs])):
        with open(osp.join(meta, fname), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    summary = dict(name=name, num_ids=num_ids, num_images=img_i,
                   num_templates=tid, num_media=mid, num_pairs=len(pairs),
                   num_genuine=len(genuine), seed=seed,
                   difficulty=difficulty)
    with open(osp.join(out_dir, 'meta.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary

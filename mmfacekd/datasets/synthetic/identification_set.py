"""A synthetic 1:N identification set (MegaFace-style layout).

Writes, under ``out_dir``::

    probe/<identity>/<n>.jpg        probe identities, several images each
    distractors/<identity>/<n>.jpg  other identities, one or more images
    probe_list.txt                  "probe/<id>/<n>.jpg <id>" per line
    distractor_list.txt             "distractors/<id>/<n>.jpg" per line
    meta.json                       counts and arguments

i.e. both layouts :class:`~mmfacekd.datasets.IdentificationDataset` reads
(folder layout with ``data_root=out_dir``; list layout with
``probe_list='probe_list.txt'``, ``distractor_list='distractor_list.txt'``).
Images are aligned 112x112 JPEGs of the procedural renderer; with
``landmarks=True`` the list lines also carry each image's exact five
landmarks (``<path> [<id>] x1 y1 ... x5 y5``). Probe and distractor
identities are disjoint and come from their own random stream (disjoint
from the training and pair-set identities of ``synthetic_set``); every
image has its own generator seeded by ``(seed, stream, identity, n)``, so
the output does not depend on ``workers``.

Size: by default 50 probe identities with 8-12 images (seed 0: 492
probes, 2,226 same-identity pairs) and 2,000 single-image distractors, i.e.
~1M (984,000) probe-distractor impostor pairs: the FPR resolution is ~1e-6,
FPR 1e-4 rests on ~98 false accepts and 1e-5 on ~9 (MegaFace reports 1e-6 with
1M distractors, 3.5e9 impostor pairs). Report ``tpr@fpr1e-4``.
"""
import json
import os
import os.path as osp
from typing import Dict, Tuple

import cv2
import numpy as np

from .face_renderer import render_face, sample_identity, sample_nuisance
from .synthetic_set import parallel_map

_IDENT_STREAM = 41


def _render(seed: int, ident: int, n: int, difficulty: float):
    idt = sample_identity(np.random.default_rng([seed, _IDENT_STREAM, ident,
                                                 0]))
    rng = np.random.default_rng([seed, _IDENT_STREAM, ident, n + 1])
    return render_face(idt, sample_nuisance(rng, difficulty))


def _render_jpeg(job) -> Tuple[bytes, np.ndarray]:
    seed, ident, n, difficulty, quality = job
    img, lms = _render(seed, ident, n, difficulty)
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    return buf.tobytes(), lms


def write_identification_set(out_dir: str,
                             num_probe_ids: int = 50,
                             probe_imgs: Tuple[int, int] = (8, 12),
                             num_distractor_ids: int = 2000,
                             distractor_imgs: Tuple[int, int] = (1, 1),
                             seed: int = 0,
                             difficulty: float = 1.0,
                             quality: int = 90,
                             landmarks: bool = False,
                             workers: int = 1) -> Dict[str, int]:
    """Write the probe + distractor set; returns (and saves) a summary.

    Args:
        out_dir (str): Output folder (created).
        num_probe_ids (int): Probe identities.
        probe_imgs (tuple): Min and max images per probe identity (>= 2).
        num_distractor_ids (int): Distractor identities.
        distractor_imgs (tuple): Min and max images per distractor identity.
        seed (int): Seed; the output is a pure function of the arguments.
        difficulty (float): Nuisance strength (see ``sample_nuisance``).
        quality (int): JPEG quality.
        landmarks (bool): Append the five landmarks to every list line.
        workers (int): Rendering processes (the output does not depend on
            it).
    """
    if probe_imgs[0] < 2:
        raise ValueError('probe identities need at least 2 images each.')
    if num_probe_ids < 1 or num_distractor_ids < 1 or distractor_imgs[0] < 1:
        raise ValueError('need at least one probe identity and one '
                         'distractor image.')
    counts_rng = np.random.default_rng([seed, _IDENT_STREAM, 2**31])
    n_probe = counts_rng.integers(probe_imgs[0], probe_imgs[1] + 1,
                                  num_probe_ids)
    n_dis = counts_rng.integers(distractor_imgs[0], distractor_imgs[1] + 1,
                                num_distractor_ids)
    plan = []  # (role, identity, image number)
    for role, first, counts in (('probe', 0, n_probe),
                                ('distractors', num_probe_ids, n_dis)):
        for k, count in enumerate(counts):
            plan.extend((role, first + k, n) for n in range(int(count)))
    rendered = parallel_map(
        _render_jpeg, [(seed, ident, n, difficulty, quality)
                       for _, ident, n in plan], workers)
    lines = {'probe': [], 'distractors': []}
    for (role, ident, n), (jpg, lms) in zip(plan, rendered):
        name = f'id{ident:05d}'
        os.makedirs(osp.join(out_dir, role, name), exist_ok=True)
        rel = f'{role}/{name}/{n:03d}.jpg'
        with open(osp.join(out_dir, rel), 'wb') as f:
            f.write(jpg)
        fields = [rel] + ([name] if role == 'probe' else [])
        if landmarks:
            fields += [f'{v:.2f}' for v in lms.reshape(-1)]
        lines[role].append(' '.join(fields))
    for role, fname in (('probe', 'probe_list.txt'),
                        ('distractors', 'distractor_list.txt')):
        with open(osp.join(out_dir, fname), 'w') as f:
            f.write('\n'.join(lines[role]) + '\n')
    summary = dict(num_probe_ids=num_probe_ids,
                   num_probes=int(n_probe.sum()),
                   num_distractor_ids=num_distractor_ids,
                   num_distractors=int(n_dis.sum()),
                   num_genuine_pairs=int((n_probe * (n_probe - 1) // 2).sum()),
                   num_impostor_pairs=int(n_probe.sum()) * int(n_dis.sum()),
                   seed=seed,
                   difficulty=difficulty, landmarks=landmarks)
    with open(osp.join(out_dir, 'meta.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary

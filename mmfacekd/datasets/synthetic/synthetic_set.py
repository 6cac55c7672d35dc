"""Write the embedded synthetic face set in the real on-disk formats.

Training images go to an insightface RecordIO set (``train.rec``,
``train.idx``, ``property``; record 0 header + identity records), pair
sets to insightface ``.bin`` pickles. Everything is a pure function of the
seed: each image has its own generator seeded by ``(seed, stream, id, n)``,
so the result does not depend on the order or process that renders it.
"""
import json
import os
import os.path as osp
import pickle
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..recordio import IndexedRecordWriter, IRHeader, pack_record
from .face_renderer import render_face, sample_identity, sample_nuisance

_TRAIN_STREAM, _VAL_STREAM = 1, 2


@dataclass
class PairSetSpec:
    """A verification set: name, number of pairs and nuisance difficulty."""
    name: str
    num_pairs: int = 500
    difficulty: float = 1.0


DEFAULT_PAIR_SETS = (
    PairSetSpec('synth_lfw', 500, 0.8),
    PairSetSpec('synth_cfp', 500, 1.2),
    PairSetSpec('synth_agedb', 500, 1.5),
)


def _identity(seed: int, stream: int, ident: int):
    return sample_identity(np.random.default_rng([seed, stream, ident, 0]))


def render_image(seed: int, stream: int, ident: int, n: int,
                 difficulty: float) -> np.ndarray:
    """Render image ``n`` of identity ``ident`` (RGB uint8, 112x112)."""
    rng = np.random.default_rng([seed, stream, ident, n + 1])
    img, _ = render_face(_identity(seed, stream, ident),
                         sample_nuisance(rng, difficulty))
    return img


def encode_jpeg(img_rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _render_jpeg(args) -> bytes:
    seed, stream, ident, n, difficulty, quality = args
    return encode_jpeg(render_image(seed, stream, ident, n, difficulty),
                       quality)


def _map(jobs: List[tuple], workers: int) -> List[bytes]:
    if workers <= 1:
        return [_render_jpeg(j) for j in jobs]
    with get_context('fork').Pool(workers) as pool:
        return pool.map(_render_jpeg, jobs, chunksize=64)


def images_per_identity(rng: np.random.Generator, num_ids: int,
                        min_imgs: int, max_imgs: int) -> np.ndarray:
    """Per-identity image counts (uniform in [min_imgs, max_imgs])."""
    return rng.integers(min_imgs, max_imgs + 1, size=num_ids)


def write_train_rec(out_dir: str, num_ids: int, min_imgs: int, max_imgs: int,
                    seed: int = 0, difficulty: float = 1.0,
                    quality: int = 90, workers: int = 1) -> Dict[str, int]:
    """Write ``train.rec``/``train.idx``/``property`` in insightface layout."""
    counts = images_per_identity(np.random.default_rng([seed, 99]), num_ids,
                                 min_imgs, max_imgs)
    jobs = [(seed, _TRAIN_STREAM, i, n, difficulty, quality)
            for i in range(num_ids) for n in range(counts[i])]
    labels = [j[2] for j in jobs]
    jpegs = _map(jobs, workers)
    num_images = len(jpegs)
    first_id_key = num_images + 1
    with IndexedRecordWriter(osp.join(out_dir, 'train.idx'),
                             osp.join(out_dir, 'train.rec')) as w:
        w.write(0, pack_record(
            IRHeader(2, np.array([first_id_key, first_id_key + num_ids],
                                 np.float32), 0, 0), b''))
        for key, (jpg, label) in enumerate(zip(jpegs, labels), 1):
            w.write(key, pack_record(IRHeader(0, float(label), key, 0), jpg))
        start = 1
        for i in range(num_ids):
            end = start + int(counts[i])
            w.write(first_id_key + i, pack_record(
                IRHeader(2, np.array([start, end], np.float32), 0, 0), b''))
            start = end
    with open(osp.join(out_dir, 'property'), 'w') as f:
        f.write(f'{num_ids},112,112')
    return dict(num_ids=num_ids, num_images=num_images)


def write_pair_bin(path: str, spec: PairSetSpec, id_offset: int,
                   num_ids: int, seed: int = 0, quality: int = 90,
                   workers: int = 1) -> None:
    """Write a verification ``.bin``: half genuine, half impostor pairs.

    Pair identities come from ``num_ids`` identities disjoint from training
    (validation stream, offset by ``id_offset`` per set).
    """
    rng = np.random.default_rng([seed, _VAL_STREAM, id_offset])
    jobs, issame = [], []
    img_no = 0
    for p in range(spec.num_pairs):
        same = p % 2 == 0
        a = int(rng.integers(num_ids))
        b = a if same else int((a + rng.integers(1, num_ids)) % num_ids)
        for ident in (a, b):
            jobs.append((seed, _VAL_STREAM, id_offset + ident, img_no,
                         spec.difficulty, quality))
            img_no += 1
        issame.append(same)
    perm = rng.permutation(spec.num_pairs)
    jpegs = _map(jobs, workers)
    bins = [jpegs[2 * i + k] for i in perm for k in (0, 1)]
    with open(path, 'wb') as f:
        pickle.dump((bins, [issame[i] for i in perm]), f, protocol=4)


def make_synthetic_faces(out_dir: str,
                         num_ids: int = 300,
                         min_imgs: int = 15,
                         max_imgs: int = 25,
                         pair_sets: Sequence[PairSetSpec] = DEFAULT_PAIR_SETS,
                         val_ids: int = 200,
                         seed: int = 0,
                         difficulty: float = 1.0,
                         quality: int = 90,
                         workers: int = 1) -> Dict[str, object]:
    """Generate the synthetic training set and pair sets under ``out_dir``.

    Returns a summary dict (also written to ``out_dir/meta.json``).
    """
    os.makedirs(out_dir, exist_ok=True)
    summary: Dict[str, object] = dict(seed=seed, difficulty=difficulty)
    summary.update(write_train_rec(out_dir, num_ids, min_imgs, max_imgs, seed,
                                   difficulty, quality, workers))
    for k, spec in enumerate(pair_sets):
        write_pair_bin(osp.join(out_dir, f'{spec.name}.bin'), spec,
                       (k + 1) * 100000, val_ids, seed, quality, workers)
    summary['pair_sets'] = {s.name: s.num_pairs for s in pair_sets}
    with open(osp.join(out_dir, 'meta.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary

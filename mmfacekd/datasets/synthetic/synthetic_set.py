"""Write the embedded synthetic face set in the real on-disk formats.

Training images go to an insightface RecordIO set (``train.rec``,
``train.idx``, ``property``; record 0 header + identity records), pair
sets to insightface ``.bin`` pickles (by default three sets of 3,000
pairs, 10 contiguous folds of 300, half genuine in every fold). Everything
is a pure function of the seed: each image has its own generator seeded by
``(seed, stream, id, n)``, so the result does not depend on the order or
process that renders it.
"""
import json
import os
import os.path as osp
import pickle
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Dict, List, Sequence

import cv2
import numpy as np

from ..recordio import IndexedRecordWriter, IRHeader, pack_record
from .face_renderer import render_face, sample_identity, sample_nuisance

_TRAIN_STREAM, _VAL_STREAM = 1, 2


#: Pairs per verification set (LFW has 6,000; 10 folds of 300 here).
DEFAULT_NUM_PAIRS = 3000
#: Identities (disjoint from training) each pair set draws from.
DEFAULT_VAL_IDS = 1000
#: Folds of the verification protocol (contiguous, docs/formats.md section 2).
NUM_FOLDS = 10


@dataclass
class PairSetSpec:
    """A verification set: name, number of pairs and nuisance difficulty."""
    name: str
    num_pairs: int = DEFAULT_NUM_PAIRS
    difficulty: float = 1.0


# With 3,000 pairs (folds of 300) a model at 90% accuracy has a fold std of
# about 1.7 points (binomial) and a mean accurate to ~0.55 points; with the
# former 500 pairs (folds of 50) it was 4.2 and 1.3 points.
DEFAULT_PAIR_SETS = (
    PairSetSpec('synth_lfw', DEFAULT_NUM_PAIRS, 0.8),
    PairSetSpec('synth_cfp', DEFAULT_NUM_PAIRS, 1.2),
    PairSetSpec('synth_agedb', DEFAULT_NUM_PAIRS, 1.5),
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


def parallel_map(fn, jobs: List[tuple], workers: int) -> list:
    """``[fn(j) for j in jobs]``, in order, on ``workers`` processes.

    ``fn`` must be a module-level function whose result depends only on its
    job, so the output does not depend on ``workers``.
    """
    if workers <= 1 or len(jobs) < 2:
        return [fn(j) for j in jobs]
    chunk = max(1, min(64, len(jobs) // (4 * workers)))
    with get_context('fork').Pool(workers) as pool:
        return pool.map(fn, jobs, chunksize=chunk)


def _map(jobs: List[tuple], workers: int) -> List[bytes]:
    return parallel_map(_render_jpeg, jobs, workers)


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


def fold_sizes(num_pairs: int, num_folds: int = NUM_FOLDS) -> List[int]:
    """Sizes of the contiguous folds of ``KFold(num_folds, shuffle=False)``:
    the first ``num_pairs % num_folds`` folds get one extra pair."""
    k = max(1, min(num_folds, num_pairs))
    return [num_pairs // k + (1 if i < num_pairs % k else 0)
            for i in range(k)]


def balanced_issame(rng: np.random.Generator, num_pairs: int,
                    num_folds: int = NUM_FOLDS) -> List[bool]:
    """Genuine/impostor labels, half genuine **within every fold**.

    The verification protocol splits the pairs into contiguous folds, so
    each fold gets ``size // 2`` genuine pairs (odd folds alternate the
    extra one), shuffled inside the fold.
    """
    out: List[bool] = []
    for i, size in enumerate(fold_sizes(num_pairs, num_folds)):
        pos = size // 2 + (size % 2) * (1 - i % 2)
        fold = np.array([True] * pos + [False] * (size - pos))
        out.extend(bool(x) for x in fold[rng.permutation(size)])
    return out


def write_pair_bin(path: str, spec: PairSetSpec, id_offset: int,
                   num_ids: int, seed: int = 0, quality: int = 90,
                   workers: int = 1) -> Dict[str, int]:
    """Write a verification ``.bin``: half genuine, half impostor pairs.

    Every fold of the 10-fold protocol (contiguous, as in docs/formats.md
    section 2) is half genuine; every image is a distinct render. Pair
    identities come from ``num_ids`` identities disjoint from training
    (validation stream, offset by ``id_offset`` per set).
    """
    if num_ids < 2:
        raise ValueError('a pair set needs at least 2 identities.')
    rng = np.random.default_rng([seed, _VAL_STREAM, id_offset])
    issame = balanced_issame(rng, spec.num_pairs)
    jobs = []
    img_no = 0
    for same in issame:
        a = int(rng.integers(num_ids))
        b = a if same else int((a + rng.integers(1, num_ids)) % num_ids)
        for ident in (a, b):
            jobs.append((seed, _VAL_STREAM, id_offset + ident, img_no,
                         spec.difficulty, quality))
            img_no += 1
    bins = _map(jobs, workers)
    with open(path, 'wb') as f:
        pickle.dump((bins, issame), f, protocol=4)
    return dict(num_pairs=spec.num_pairs, num_genuine=int(sum(issame)))


def make_synthetic_faces(out_dir: str,
                         num_ids: int = 300,
                         min_imgs: int = 15,
                         max_imgs: int = 25,
                         pair_sets: Sequence[PairSetSpec] = DEFAULT_PAIR_SETS,
                         val_ids: int = DEFAULT_VAL_IDS,
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
    if val_ids > 100000:
        raise ValueError('val_ids must be <= 100000 (the identity offset '
                         'between pair sets).')
    for k, spec in enumerate(pair_sets):
        write_pair_bin(osp.join(out_dir, f'{spec.name}.bin'), spec,
                       (k + 1) * 100000, val_ids, seed, quality, workers)
    summary['pair_sets'] = {s.name: s.num_pairs for s in pair_sets}
    summary['val_ids'] = val_ids
    with open(osp.join(out_dir, 'meta.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary

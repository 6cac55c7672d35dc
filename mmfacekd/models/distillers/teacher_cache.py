"""The teacher-embedding cache: format, fingerprints and the reader.

A frozen teacher gives the same embedding for the same record every epoch,
so logit and embedding losses can read it from disk instead of running the
teacher backbone (``tools/misc/cache_teacher.py`` writes the cache,
``FaceDistiller(teacher_cache=PATH)`` reads it). Files, for
``PATH = <dir>/<stem>.npy``:

* ``<stem>.npy`` — ``(N, 2, D)`` embeddings (``extract_feat`` output, not
  normalized), row = the training set's sample index (``.idx`` order of
  image records), view 0 = the image, view 1 = its horizontal flip;
  float16 (default) or float32; a NumPy ``.npy`` memory-mapped for reading.
* ``<stem>.keys.npy`` — ``(N,)`` int64 RecordIO key of each row; every
  sample read is checked against it.
* ``<stem>.json`` — the header: teacher (checkpoint SHA-256, model config,
  key revisions), dataset (``.rec``/``.idx`` path, sizes, SHA-256 of the
  ``.idx`` and of the key list), preprocessing (mean, std, channel order,
  resize) and the deterministic part of the training pipeline, dtype,
  ``complete``.
* ``<stem>.progress.npy`` — per-chunk done flags while writing (resume).

Any difference between the header and the run is an error naming the field
and the command that rebuilds the cache; nothing is silently mixed.
"""
import hashlib
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

__all__ = [
    'CACHE_FORMAT', 'TeacherCacheError', 'TeacherEmbeddingCache',
    'cache_files', 'file_sha256', 'dataset_fingerprint',
    'preprocessing_fingerprint', 'teacher_fingerprint', 'pipeline_for_cache',
    'REBUILD_HINT', 'check_cache_config', 'cache_compatible'
]

CACHE_FORMAT = 'mmfacekd-teacher-embedding-cache'
CACHE_VERSION = 1
REBUILD_HINT = ('rebuild it with `python tools/misc/cache_teacher.py '
                '<config>` (it writes model.teacher_cache), or remove '
                '`model.teacher_cache` to run the live teacher')
# transforms that leave the image alone or are the one random transform the
# cache stores both outcomes of
_FLIP_TYPES = ('RandomFlip', 'mmcv.RandomFlip')
_DETERMINISTIC_TYPES = ('LoadFaceImage', 'PackFaceInputs')


class TeacherCacheError(ValueError):
    """A teacher cache that does not match the run (or is unusable)."""


def cache_files(path: str) -> Dict[str, str]:
    """The files of the cache ``path`` (``<stem>.npy``)."""
    if not path.endswith('.npy'):
        raise TeacherCacheError(
            f'teacher_cache={path!r}: name the embedding file, ending in '
            '.npy (e.g. work_dirs/teacher_cache/r50_ms1mv2.npy); the header '
            'and key list are written next to it.')
    stem = path[:-len('.npy')]
    return dict(embeddings=path, keys=stem + '.keys.npy',
                header=stem + '.json', progress=stem + '.progress.npy')


def file_sha256(path: str, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def _jsonable(obj):
    """Config values as plain JSON (tuples -> lists, ConfigDict -> dict)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def dataset_fingerprint(dataset) -> dict:
    """What identifies a RecordIO training set: paths, sizes, index hash.

    ``dataset`` is a (fully initialized) :class:`MXRecordDataset`.
    """
    keys = np.ascontiguousarray(dataset.image_keys, dtype=np.int64)
    return dict(
        type=type(dataset).__name__,
        rec_path=osp.realpath(dataset.rec_path),
        rec_size=os.path.getsize(dataset.rec_path),
        idx_path=osp.realpath(dataset.idx_path),
        idx_size=os.path.getsize(dataset.idx_path),
        idx_sha256=file_sha256(dataset.idx_path),
        num_records=int(len(keys)),
        keys_sha256=hashlib.sha256(keys.tobytes()).hexdigest())


def preprocessing_fingerprint(preprocessor) -> dict:
    """The value-changing settings of a :class:`FaceDataPreprocessor`.

    (``channels_last`` changes strides, not values, and is left out.)
    """
    mean = getattr(preprocessor, 'mean', None)
    std = getattr(preprocessor, 'std', None)
    return dict(
        type=type(preprocessor).__name__,
        mean=None if mean is None else [float(v) for v in mean.flatten()],
        std=None if std is None else [float(v) for v in std.flatten()],
        bgr_to_rgb=bool(getattr(preprocessor, '_channel_conversion', False)),
        resize_to=getattr(preprocessor, 'resize_to', None))


def teacher_fingerprint(teacher_cfg: dict, teacher_ckpt: Optional[str],
                        revise_keys: Sequence) -> dict:
    """Teacher checkpoint hash + architecture (its model config)."""
    if teacher_ckpt is None:
        raise TeacherCacheError(
            'teacher_cache needs model.teacher_ckpt: a cache of a randomly '
            'initialized teacher cannot be matched to anything.')
    cfg = dict(teacher_cfg)
    cfg.pop('init_cfg', None)
    return dict(checkpoint=osp.realpath(teacher_ckpt),
                sha256=file_sha256(teacher_ckpt),
                model=_jsonable(cfg),
                revise_keys=_jsonable([list(k) for k in revise_keys]))


def pipeline_for_cache(pipeline: Sequence[dict]) -> List[dict]:
    """The training pipeline the cache depends on (flip taken out).

    The cache holds one embedding per record and flip state, so the
    pipeline may only decode/pack (``LoadFaceImage``, ``PackFaceInputs``)
    and flip horizontally (``RandomFlip``); any other transform changes
    the image the student sees in a way the cache cannot know.

    Raises:
        TeacherCacheError: naming the transform that is not allowed.
    """
    kept = []
    for t in pipeline:
        t = dict(t)
        kind = t.get('type')
        if kind in _FLIP_TYPES:
            direction = t.get('direction', 'horizontal')
            if direction != 'horizontal':
                raise TeacherCacheError(
                    f'train pipeline: {kind}(direction={direction!r}) — the '
                    'teacher cache stores the image and its horizontal flip '
                    'only; use direction="horizontal" or the live teacher.')
            continue
        if kind not in _DETERMINISTIC_TYPES:
            raise TeacherCacheError(
                f'train pipeline: transform {kind!r} is not supported with '
                'a teacher cache (it stores one embedding per record and '
                'flip, so a transform that changes the image otherwise — '
                'crop, colour jitter, resize — would give the student an '
                'image the cached teacher never saw); remove it or remove '
                '`model.teacher_cache`. Allowed: '
                f'{_DETERMINISTIC_TYPES + _FLIP_TYPES}.')
        kept.append(_jsonable(t))
    return kept


def _mismatch(field: str, path: str, cached, current) -> TeacherCacheError:
    return TeacherCacheError(
        f'Teacher cache {path} is stale: {field} differs (cache: '
        f'{cached!r}, this run: {current!r}); {REBUILD_HINT}.')


class TeacherEmbeddingCache:
    """Read-only view of a complete teacher cache, checked against a run.

    Args:
        path (str): The cache's ``.npy`` file (``model.teacher_cache``).
        teacher (dict, optional): :func:`teacher_fingerprint` of the run.
        preprocessing (dict, optional): :func:`preprocessing_fingerprint`
            of the run's data preprocessor.

    The dataset is checked lazily, per sample (:meth:`lookup`): its
    ``img_source`` names the ``.rec`` file and record key, which must be
    the cache's file (size and ``.idx`` hash verified once per file) and
    the key stored for that row.
    """

    def __init__(self, path: str, teacher: Optional[dict] = None,
                 preprocessing: Optional[dict] = None) -> None:
        self.path = path
        self.files = cache_files(path)
        header_path = self.files['header']
        if not osp.isfile(header_path) or not osp.isfile(path):
            raise TeacherCacheError(
                f'Teacher cache {path} does not exist (no {header_path}); '
                'build it with `python tools/misc/cache_teacher.py '
                '<config>`.')
        with open(header_path) as f:
            self.header = json.load(f)
        h = self.header
        if h.get('format') != CACHE_FORMAT or \
                h.get('version') != CACHE_VERSION:
            raise TeacherCacheError(
                f'{header_path} is not a version-{CACHE_VERSION} mmfacekd '
                f'teacher cache (format {h.get("format")!r}, version '
                f'{h.get("version")!r}); {REBUILD_HINT}.')
        if not h.get('complete', False):
            raise TeacherCacheError(
                f'Teacher cache {path} is incomplete (the writing run was '
                'interrupted); run `python tools/misc/cache_teacher.py '
                '<config>` again, it resumes where it stopped.')
        if teacher is not None:
            for field in ('sha256', 'model', 'revise_keys'):
                if h['teacher'].get(field) != teacher.get(field):
                    raise _mismatch(f'teacher.{field}', path,
                                    h['teacher'].get(field),
                                    teacher.get(field))
        if preprocessing is not None and \
                h['preprocessing'] != _jsonable(preprocessing):
            for field in sorted(set(h['preprocessing']) | set(preprocessing)):
                a = h['preprocessing'].get(field)
                b = _jsonable(preprocessing).get(field)
                if a != b:
                    raise _mismatch(f'preprocessing.{field}', path, a, b)
        self.embeddings = np.load(path, mmap_mode='r')
        self.keys = np.load(self.files['keys'], mmap_mode='r')
        n = h['dataset']['num_records']
        if self.embeddings.shape != (n, 2, h['dim']) or \
                self.keys.shape != (n, ):
            raise TeacherCacheError(
                f'Teacher cache {path}: arrays of shape '
                f'{self.embeddings.shape} / {self.keys.shape} do not match '
                f'the header ({n} records, dim {h["dim"]}); '
                f'{REBUILD_HINT}.')
        self._checked_files: Dict[str, bool] = {}

    @property
    def dim(self) -> int:
        return int(self.header['dim'])

    def _check_rec_file(self, rec_path: str) -> None:
        if rec_path in self._checked_files:
            return
        d = self.header['dataset']
        real = osp.realpath(rec_path)
        if real != d['rec_path']:
            raise _mismatch('dataset.rec_path', self.path, d['rec_path'],
                            real)
        if os.path.getsize(rec_path) != d['rec_size']:
            raise _mismatch('dataset.rec_size', self.path, d['rec_size'],
                            os.path.getsize(rec_path))
        idx = d['idx_path']
        if not osp.isfile(idx) or os.path.getsize(idx) != d['idx_size'] \
                or file_sha256(idx) != d['idx_sha256']:
            raise _mismatch('dataset.idx_sha256', self.path,
                            d['idx_sha256'],
                            file_sha256(idx) if osp.isfile(idx) else None)
        self._checked_files[rec_path] = True

    def lookup(self, data_samples: Sequence,
               device: Optional[torch.device] = None) -> torch.Tensor:
        """The cached ``(B, D)`` float32 teacher embeddings of a batch.

        Each sample's row is its ``sample_idx``, its view its ``flip``
        (absent = not flipped); its ``img_source`` must name the cached
        ``.rec`` file and the key stored for the row.
        """
        rows, views = [], []
        for ds in data_samples:
            get = ds.get
            row = get('sample_idx', None)
            src = get('img_source', None)
            if row is None or src is None or ' record key ' not in src:
                raise TeacherCacheError(
                    'teacher_cache: a training sample has no sample_idx / '
                    'img_source of a RecordIO record (got '
                    f'sample_idx={row!r}, img_source={src!r}); the cache '
                    'works with MXRecordDataset and PackFaceInputs keeping '
                    "'sample_idx', 'img_source' and 'flip' in meta_keys.")
            rec_path, key = src.rsplit(' record key ', 1)
            self._check_rec_file(rec_path)
            row = int(row)
            if not 0 <= row < len(self.keys) or \
                    int(self.keys[row]) != int(key):
                raise _mismatch(
                    f'dataset record of row {row}', self.path,
                    int(self.keys[row]) if 0 <= row < len(self.keys)
                    else None, int(key))
            rows.append(row)
            views.append(1 if get('flip', False) else 0)
        emb = self.embeddings[np.asarray(rows), np.asarray(views)]
        out = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
        return out.to(device) if device is not None else out


def check_cache_config(cfg) -> None:
    """Config-level checks of ``model.teacher_cache`` (``tools/train.py``).

    The distiller checks teacher, preprocessing and every record it reads;
    what only the config knows is the training pipeline: it must be one the
    cache can serve (:func:`pipeline_for_cache`) and the one the cache was
    written for.
    """
    path = cfg.model.get('teacher_cache')
    if not path:
        return
    ds = cfg.train_dataloader.dataset
    if ds.get('type') != 'MXRecordDataset':
        raise TeacherCacheError(
            f'model.teacher_cache needs an MXRecordDataset training set, '
            f'got train_dataloader.dataset.type={ds.get("type")!r}.')
    kept = pipeline_for_cache(ds.get('pipeline', []))
    header = cache_files(path)['header']
    if not osp.isfile(header):
        return  # the distiller reports the missing cache with the command
    with open(header) as f:
        cached = json.load(f).get('pipeline')
    if cached != _jsonable(kept):
        raise _mismatch('pipeline', path, cached, _jsonable(kept))


def cache_compatible(cfg) -> bool:
    """Whether a training config could read its teacher from a cache: a
    FaceDistiller without teacher recorders, trainable or prompted teacher
    parts, on an MXRecordDataset whose pipeline only decodes and flips."""
    model = cfg.model
    if model.get('type') != 'FaceDistiller' or model.get('teacher_trainable'):
        return False
    if any(str(r.get('source', '')).startswith('teacher.')
           for r in (model.get('recorders') or {}).values()):
        return False
    if (model.teacher.backbone.get('prompt_cfg')
            or model.teacher.backbone.get('prompts_enabled')):
        return False
    ds = cfg.train_dataloader.dataset
    if ds.get('type') != 'MXRecordDataset':
        return False
    try:
        pipeline_for_cache(ds.get('pipeline', []))
    except TeacherCacheError:
        return False
    return True

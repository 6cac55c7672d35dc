"""Write a teacher-embedding cache (``tools/misc/cache_teacher.py``).

One pass of the frozen teacher over every training record, image and
horizontal flip, into the files described in
:mod:`mmfacekd.models.distillers.teacher_cache`. Distributed (each rank
takes every world-size-th chunk of records and writes its rows of the one
shared memory-mapped file), resumable (a chunk is flagged done after its
rows are flushed; a rerun with the same header skips done chunks) and with
a progress bar on rank 0.
"""
import json
import os
import os.path as osp
from typing import Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.dist import barrier, get_dist_info
from mmengine.utils import ProgressBar

from mmfacekd.models.distillers.teacher_cache import (
    _FLIP_TYPES,
    CACHE_FORMAT,
    CACHE_VERSION,
    TeacherCacheError,
    cache_files,
    dataset_fingerprint,
    pipeline_for_cache,
    preprocessing_fingerprint,
    teacher_fingerprint,
)

__all__ = ['write_teacher_cache']

_DTYPES = ('float16', 'float32')
# header fields that must agree for a rerun to resume instead of restart
_IDENTITY = ('format', 'version', 'dim', 'dtype', 'chunk', 'teacher',
             'dataset', 'preprocessing', 'pipeline')


def _write_json_atomic(path: str, obj: dict) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _build_parts(cfg: Config):
    """Teacher, data preprocessor and the cache's view of the dataset."""
    from mmfacekd.models.data_preprocessors import build_face_data_preprocessor
    from mmfacekd.models.distillers.face_distiller import load_teacher_weights
    from mmfacekd.registry import DATASETS, MODELS
    model_cfg = cfg.model
    if model_cfg.get('type') != 'FaceDistiller':
        raise TeacherCacheError(
            f'cache_teacher: model.type is {model_cfg.get("type")!r}; the '
            'teacher cache is for FaceDistiller configs.')
    ds_cfg = dict(cfg.train_dataloader.dataset)
    if ds_cfg.get('type') != 'MXRecordDataset':
        raise TeacherCacheError(
            f'cache_teacher: train_dataloader.dataset.type is '
            f'{ds_cfg.get("type")!r}; the teacher cache is keyed by RecordIO '
            'record and supports MXRecordDataset.')
    pipeline = list(ds_cfg.get('pipeline', []))
    kept = pipeline_for_cache(pipeline)
    ds_cfg['pipeline'] = [t for t in pipeline
                          if dict(t).get('type') not in _FLIP_TYPES]
    dataset = DATASETS.build(ds_cfg)
    teacher = MODELS.build(model_cfg.teacher)
    revise = model_cfg.get('teacher_revise_keys', ((r'^module\.', ''), ))
    ckpt = model_cfg.get('teacher_ckpt')
    fingerprint = teacher_fingerprint(model_cfg.teacher, ckpt, revise)
    # the head is not needed for embeddings (and may live elsewhere)
    load_teacher_weights(teacher, ckpt, revise, exclude_prefixes=('head.', ))
    teacher.requires_grad_(False).eval()
    pre = build_face_data_preprocessor(model_cfg.get('data_preprocessor'))
    return teacher, pre, dataset, fingerprint, kept


def write_teacher_cache(cfg: Config, out: Optional[str] = None,
                        dtype: str = 'float16', batch_size: int = 256,
                        num_workers: int = 2,
                        progress: bool = True) -> str:
    """Embed every training record (and its flip) with the teacher.

    Args:
        cfg (Config): A FaceDistiller training config.
        out (str, optional): The cache's ``.npy``; defaults to
            ``cfg.model.teacher_cache``.
        dtype (str): 'float16' (default) or 'float32'.
        batch_size (int): Records per chunk (one forward, one done flag).
        num_workers (int): DataLoader workers.
        progress (bool): Progress bar on rank 0.

    Returns:
        str: The path of the complete cache.
    """
    if dtype not in _DTYPES:
        raise ValueError(f'cache dtype must be one of {_DTYPES}, got '
                         f'{dtype!r}')
    out = out or cfg.model.get('teacher_cache')
    if not out:
        raise TeacherCacheError(
            'cache_teacher: the config has no model.teacher_cache; pass '
            '--out PATH.npy or set model.teacher_cache.')
    files = cache_files(out)
    rank, world = get_dist_info()
    teacher, pre, dataset, t_fp, kept = _build_parts(cfg)
    device = torch.device(
        f'cuda:{int(os.environ.get("LOCAL_RANK", 0))}'
        if torch.cuda.is_available() else 'cpu')
    teacher.to(device)
    pre.to(device)
    n = len(dataset)
    num_chunks = (n + batch_size - 1) // batch_size

    def embed(batch):
        views = []
        for flip in (False, True):
            imgs = [x.flip(-1) if flip else x for x in batch['inputs']]
            data = pre(dict(inputs=imgs,
                            data_samples=batch['data_samples']), False)
            views.append(teacher.extract_feat(data['inputs']).float())
        return torch.stack(views, 1).cpu().numpy()

    with torch.inference_mode():
        dim = int(embed(pseudo_collate([dataset[0]])).shape[-1])
    header = dict(
        format=CACHE_FORMAT, version=CACHE_VERSION, dim=dim, dtype=dtype,
        chunk=batch_size, views=['image', 'hflip'], teacher=t_fp,
        dataset=dataset_fingerprint(dataset),
        preprocessing=preprocessing_fingerprint(pre), pipeline=kept,
        complete=False)
    header = json.loads(json.dumps(header, sort_keys=True))

    old = None
    if osp.isfile(files['header']):
        with open(files['header']) as f:
            old = json.load(f)
    same = old is not None and all(old.get(k) == header[k]
                                   for k in _IDENTITY)
    if same and old.get('complete'):
        if rank == 0:
            print(f'cache_teacher: {out} is complete and up to date.')
        return out
    resume = same and osp.isfile(files['progress']) and \
        osp.isfile(files['embeddings'])
    if rank == 0:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        if not resume:
            if old is not None:
                changed = [k for k in _IDENTITY
                           if old.get(k) != header[k]]
                print(f'cache_teacher: rebuilding {out} ({", ".join(changed)}'
                      ' changed)')
            np.lib.format.open_memmap(files['embeddings'], mode='w+',
                                      dtype=dtype, shape=(n, 2, dim)).flush()
            np.save(files['keys'], np.asarray(dataset.image_keys, np.int64))
            np.save(files['progress'], np.zeros(num_chunks, np.uint8))
            _write_json_atomic(files['header'], header)
    barrier()
    emb = np.load(files['embeddings'], mmap_mode='r+')
    done = np.load(files['progress'], mmap_mode='r+')
    mine = [c for c in range(rank, num_chunks, world) if not done[c]]
    if rank == 0 and resume:
        print(f'cache_teacher: resuming {out}: '
              f'{int(done.sum())}/{num_chunks} chunks already written')
    batches = [list(range(c * batch_size, min(n, (c + 1) * batch_size)))
               for c in mine]
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, num_workers=num_workers,
        collate_fn=pseudo_collate)
    bar = ProgressBar(len(mine)) if progress and rank == 0 and mine \
        else None
    with torch.inference_mode():
        for c, batch in zip(mine, loader):
            start = c * batch_size
            values = embed(batch)
            emb[start:start + len(values)] = values.astype(dtype)
            emb.flush()
            done[c] = 1
            done.flush()
            if bar is not None:
                bar.update()
    del emb
    barrier()
    if rank == 0:
        done = np.load(files['progress'])
        if not done.all():
            raise RuntimeError(
                f'cache_teacher: {int((done == 0).sum())} chunks of {out} '
                'were not written (a rank failed?); run the tool again to '
                'finish them.')
        header['complete'] = True
        _write_json_atomic(files['header'], header)
        os.remove(files['progress'])
        print(f'\ncache_teacher: wrote {out} ({n} records x 2 views x '
              f'{dim}, {dtype})')
    barrier()
    return out

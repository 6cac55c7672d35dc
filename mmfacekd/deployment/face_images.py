"""Real face crops for export checks, calibration and benchmarks.

Reads them with the project's own datasets (``VerificationBinDataset`` for a
``.bin`` pair set, ``MXRecordDataset`` for a RecordIO training set) and
returns (N, H, W, 3) uint8 RGB arrays.
"""
import os.path as osp
from typing import List, Optional, Tuple

import numpy as np

_HINT = ('generate the synthetic set with `python '
         'tools/misc/make_synthetic_faces.py data/synthetic` or pass '
         '--images with a .bin pair set or a folder holding train.rec/'
         'train.idx')


def _build(source: str):
    from mmfacekd.datasets import MXRecordDataset, VerificationBinDataset
    pipeline = [dict(type='LoadFaceImage', to_rgb=True)]
    if source.endswith('.bin'):
        if not osp.isfile(source):
            raise FileNotFoundError(f'image source {source} not found: '
                                    f'{_HINT}')
        return VerificationBinDataset(ann_file=source, pipeline=pipeline)
    root = osp.dirname(source) if source.endswith(('.rec', '.idx')) \
        else source
    if not osp.isfile(osp.join(root, 'train.idx')):
        raise FileNotFoundError(
            f'image source {source}: no train.idx/train.rec there: {_HINT}')
    return MXRecordDataset(data_root=root, pipeline=pipeline)


def load_face_images(source: str, num: Optional[int] = None,
                     seed: Optional[int] = None) -> np.ndarray:
    """Up to ``num`` crops of ``source`` (a ``.bin`` file, or a folder /
    ``train.rec`` of a RecordIO set) as (N, H, W, 3) uint8 RGB.

    ``seed`` None takes the first ``num`` images; otherwise a seeded random
    subset (sorted).
    """
    dataset = _build(source)
    n = len(dataset)
    if num is None or num >= n:
        idx = np.arange(n)
    elif seed is None:
        idx = np.arange(num)
    else:
        idx = np.sort(np.random.default_rng(seed).choice(n, num,
                                                         replace=False))
    return np.stack([dataset[int(i)]['img'] for i in idx])


def load_pair_set(path: str) -> Tuple[str, np.ndarray, np.ndarray]:
    """``(set name, (2P, H, W, 3) crops, (P,) issame)`` of a ``.bin``."""
    dataset = _build(path)
    images: List[np.ndarray] = []
    issame = []
    for i in range(len(dataset)):
        item = dataset[i]
        images.append(item['img'])
        if i % 2 == 0:
            issame.append(bool(item['pair_label']))
    return dataset.set_name, np.stack(images), np.asarray(issame)

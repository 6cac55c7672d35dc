"""Pack a face sample into ``inputs`` + an mmpretrain ``DataSample``."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.structures import DataSample

from mmfacekd.registry import TRANSFORMS

from ..samplers.sample_index import SampleIndex, index_meta


@TRANSFORMS.register_module()
class PackFaceInputs(BaseTransform):
    """Pack ``img`` (HWC uint8) to a CHW uint8 tensor and a ``DataSample``.

    ``gt_label`` becomes the sample's label; each key of ``meta_keys``
    present in ``results`` is copied into its metainfo: ``set_name``,
    ``sample_idx`` and ``pair_label`` for the verification metric;
    ``eval_protocol`` (``'verification'``, ``'ijb'``, ``'identification'``)
    tells each metric which samples of a mixed test set are its own;
    ``face_score``/``template_id``/``media_id`` (IJB) and
    ``identity``/``role`` (1:N identification) carry the protocol fields.

    Per-sample metainfo chosen by the sampler — a
    :class:`~mmfacekd.datasets.samplers.SampleIndex` arriving as
    ``sample_idx``, e.g. ``with_cls_loss`` of ``IdentityBalancedSampler`` —
    is always copied into the metainfo (whatever ``meta_keys``), and
    ``sample_idx`` itself is stored as a plain int.
    """

    def __init__(self, meta_keys: Sequence[str] = (
            'sample_idx', 'set_name', 'pair_label', 'img_source', 'flip',
            'eval_protocol', 'img_name', 'face_score', 'template_id',
            'media_id', 'identity', 'role')
    ) -> None:
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        img = np.ascontiguousarray(results['img'].transpose(2, 0, 1))
        sample = DataSample()
        if 'gt_label' in results:
            sample.set_gt_label(int(results['gt_label']))
        meta = {k: results[k] for k in self.meta_keys if k in results}
        if 'sample_idx' in results:
            meta.update(index_meta(results['sample_idx']))
            if isinstance(meta.get('sample_idx'), SampleIndex):
                meta['sample_idx'] = int(meta['sample_idx'])
        sample.set_metainfo(meta)
        return dict(inputs=torch.from_numpy(img), data_samples=sample)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'

"""Pack a face sample into ``inputs`` + an mmpretrain ``DataSample``."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.structures import DataSample

from mmfacekd.registry import TRANSFORMS


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
        sample.set_metainfo(
            {k: results[k] for k in self.meta_keys if k in results})
        return dict(inputs=torch.from_numpy(img), data_samples=sample)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'

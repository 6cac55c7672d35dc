"""Data preprocessor for aligned face crops."""
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import ImgDataPreprocessor

from mmfacekd.registry import MODELS


@MODELS.register_module()
class FaceDataPreprocessor(ImgDataPreprocessor):
    """Stack uint8 RGB faces and normalize ``(x − mean) / std``.

    A thin specialization of MMEngine's :class:`ImgDataPreprocessor` with the
    face-recognition defaults: mean 127.5 and std 128 as stated by the GKD
    paper. insightface's released models were trained with std 127.5 —
    set ``std=127.5`` when a teacher comes from insightface (the difference is
    0.4 % of the input scale). Images are expected in RGB already (the
    datasets decode to RGB like mxnet); set ``bgr_to_rgb=True`` only for BGR
    sources.

    Args:
        mean (float): Per-channel mean. Defaults to 127.5.
        std (float): Per-channel std. Defaults to 128.0.
        bgr_to_rgb (bool): Swap channels. Defaults to False.
        non_blocking (bool): Non-blocking host-to-device copies.
            Defaults to False.
        resize_to (int, optional): Resize the normalized batch to
            ``resize_to x resize_to`` (area interpolation). Used by the CPU
            demo configs to train at 64x64; leave None for the standard
            112x112 protocol. Defaults to None.
        channels_last (bool): Hand the batch to the model in
            ``torch.channels_last`` memory format (same values, NHWC
            strides). Convolutions then run in NHWC, which is faster on CPU
            (measured in ``tools/analysis/benchmark_channels_last.py``) and
            under AMP on tensor-core GPUs; the result differs from NCHW only
            by float rounding. Defaults to False.
    """

    def __init__(self,
                 mean: float = 127.5,
                 std: float = 128.0,
                 bgr_to_rgb: bool = False,
                 non_blocking: Optional[bool] = False,
                 resize_to: Optional[int] = None,
                 channels_last: bool = False) -> None:
        super().__init__(
            mean=[mean] * 3,
            std=[std] * 3,
            bgr_to_rgb=bgr_to_rgb,
            non_blocking=non_blocking)
        self.resize_to = resize_to
        self.channels_last = channels_last

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        if self.resize_to is not None:
            data['inputs'] = F.interpolate(
                data['inputs'], size=(self.resize_to, self.resize_to),
                mode='area')
        if self.channels_last:
            data['inputs'] = data['inputs'].contiguous(
                memory_format=torch.channels_last)
        return data


def build_face_data_preprocessor(
        cfg: Optional[Union[dict, nn.Module]]) -> nn.Module:
    """Build a model's data preprocessor from mmfacekd's registry.

    ``None`` gives the default :class:`FaceDataPreprocessor`; a dict without
    ``type`` is a FaceDataPreprocessor with those arguments; a module is kept.
    (MMEngine's ``BaseModel`` would look the type up in its root registry.)
    """
    if cfg is None:
        cfg = dict(type='FaceDataPreprocessor')
    if isinstance(cfg, dict):
        cfg = dict(cfg)
        cfg.setdefault('type', 'FaceDataPreprocessor')
        cfg = MODELS.build(cfg)
    return cfg

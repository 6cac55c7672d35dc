"""The module that is exported: crops → (normalize) → (resize) → embedding.

It reproduces what ``FaceRecognizer(mode='tensor')`` sees behind its
:class:`FaceDataPreprocessor` — channel swap, ``(x - mean) / std``, the
area resize of ``resize_to`` — so one graph takes the crops of the data
pipeline whatever size the network trained at.
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .input_spec import InputSpec


def area_resize_matrix(src: int, dst: int) -> torch.Tensor:
    """(dst, src) averaging matrix of ``F.interpolate(mode='area')``.

    Area interpolation is adaptive average pooling, whose 2-D windows are
    products of 1-D windows, so ``R_h @ x @ R_wᵀ`` equals it exactly (up to
    float rounding) and exports as two MatMuls (ONNX Resize has no area
    mode).
    """
    eye = torch.eye(src, dtype=torch.float64)[None]
    return F.adaptive_avg_pool1d(eye, dst)[0].t().float().contiguous()


class AreaResize(nn.Module):
    """Resize an (N, C, H, W) batch to ``size`` like ``mode='area'``."""

    def __init__(self, src: Tuple[int, int], dst: Tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer('rows', area_resize_matrix(src[0], dst[0]))
        self.register_buffer('cols', area_resize_matrix(src[1], dst[1]).t()
                             .contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.rows, x), self.cols)


class EmbeddingGraph(nn.Module):
    """``recognizer.extract_feat`` behind the input contract ``spec``.

    Args:
        recognizer (nn.Module): A FaceRecognizer (its backbone and neck are
            used; eval mode).
        spec (InputSpec): The input contract.
    """

    def __init__(self, recognizer: nn.Module, spec: InputSpec) -> None:
        super().__init__()
        self.backbone = recognizer.backbone
        self.neck = recognizer.neck
        self.spec = spec
        self.resize = (AreaResize(spec.size, spec.network_size)
                       if spec.network_size else None)
        self.register_buffer('mean', torch.tensor(float(spec.mean)))
        self.register_buffer('inv_std', torch.tensor(1.0 / float(spec.std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.bgr_to_rgb:
            x = x.flip(1)
        if self.spec.normalization_baked:
            x = (x - self.mean) * self.inv_std
        if self.resize is not None:
            x = self.resize(x)
        x = self.backbone(x)
        if self.neck is not None:
            x = self.neck(x)
        return x

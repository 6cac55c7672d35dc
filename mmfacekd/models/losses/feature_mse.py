"""Plain feature-map MSE (FitNet-style hint loss) between a CNN map and a CNN
map or Transformer tokens."""
from typing import Optional, Sequence

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS

from ..connectors.urfm import flatten_pixel_features

__all__ = ['FeatureMSELoss', 'to_feature_map']


def to_feature_map(x: Tensor, token_grid: Optional[Sequence[int]] = None,
                   num_extra_tokens: Optional[int] = None) -> Tensor:
    """``(B, C, H, W)`` maps pass through; ``(B, N, C)`` tokens (spatial
    first, row-major, then non-spatial tokens) become ``(B, C, H, W)`` with
    the non-spatial tokens dropped."""
    if x.dim() == 4:
        return x
    tokens, (h, w), _ = flatten_pixel_features(x, token_grid,
                                               num_extra_tokens)
    return tokens[:, :h * w].transpose(1, 2).reshape(
        x.shape[0], x.shape[2], h, w)


@MODELS.register_module()
class FeatureMSELoss(nn.Module):
    """MSE between a student and a teacher feature map of one width.

    Tokens are turned into maps (:func:`to_feature_map`; trailing prompt
    outputs are dropped), then the teacher map is resized to the student's
    grid — adaptive average pooling when it is larger, bilinear
    interpolation when it is smaller — and ``loss_weight * MSE`` (mean over
    all elements) is returned. Widths must already agree (put a
    :class:`ProjectionConnector` on the student). The teacher side is not
    detached, so trainable teacher prompts (APT) receive gradients; frozen
    teacher weights are the distiller's business.

    Args:
        loss_weight (float): Defaults to 1.0.
        student_token_grid, teacher_token_grid (Sequence[int], optional):
            ``(H, W)`` of token inputs (see :func:`flatten_pixel_features`).
        student_extra_tokens, teacher_extra_tokens (int, optional): Trailing
            non-spatial tokens, when no grid is given.
    """

    def __init__(self, loss_weight: float = 1.0,
                 student_token_grid: Optional[Sequence[int]] = None,
                 teacher_token_grid: Optional[Sequence[int]] = None,
                 student_extra_tokens: Optional[int] = None,
                 teacher_extra_tokens: Optional[int] = None) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.student_layout = (student_token_grid, student_extra_tokens)
        self.teacher_layout = (teacher_token_grid, teacher_extra_tokens)

    def forward(self, student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
        s = to_feature_map(student_feat, *self.student_layout)
        t = to_feature_map(teacher_feat, *self.teacher_layout)
        if s.shape[:2] != t.shape[:2]:
            raise ValueError(
                f'FeatureMSELoss: batch/channels differ, student '
                f'{tuple(s.shape)} vs teacher {tuple(t.shape)}; project the '
                'student with a connector first')
        size = s.shape[-2:]
        if t.shape[-2:] != size:
            if t.shape[-2] >= size[0] and t.shape[-1] >= size[1]:
                t = F.adaptive_avg_pool2d(t, size)
            else:
                t = F.interpolate(t, size=size, mode='bilinear',
                                  align_corners=False)
        return self.loss_weight * F.mse_loss(s, t)

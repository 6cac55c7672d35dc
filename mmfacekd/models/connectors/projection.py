"""Trainable projection connectors between student and teacher features."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmfacekd.registry import MODELS


@MODELS.register_module()
class ProjectionConnector(BaseModule):
    """Project features to the teacher's width: Linear for (N, C) embeddings,
    1x1 Conv for (N, C, H, W) maps, optionally followed by BatchNorm.

    Args:
        in_channels (int): Student feature channels.
        out_channels (int): Teacher feature channels.
        with_norm (bool): Append BatchNorm. Defaults to False.
        spatial (bool): Expect (N, C, H, W) maps (1x1 conv) instead of
            (N, C) vectors. Defaults to False.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 with_norm: bool = False, spatial: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if spatial:
            layers = [
                nn.Conv2d(in_channels, out_channels, 1, bias=not with_norm)
            ]
            norm = nn.BatchNorm2d
        else:
            layers = [nn.Linear(in_channels, out_channels, bias=not with_norm)]
            norm = nn.BatchNorm1d
        if with_norm:
            layers.append(norm(out_channels))
        self.proj = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)

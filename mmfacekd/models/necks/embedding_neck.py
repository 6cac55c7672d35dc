"""Embedding neck turning a generic backbone's feature map into a face
embedding."""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmfacekd.registry import MODELS


@MODELS.register_module()
class EmbeddingNeck(BaseModule):
    """Map the last feature map of any backbone (e.g. mmpretrain's) to an
    embedding.

    Poolings:
      * ``'gdc'`` — global depthwise conv over the whole map, FC, BN1d
        (MobileFaceNet's GDC); needs ``feat_size``.
      * ``'flatten'`` — BN2d, dropout, flatten, FC, BN1d (IResNet's output
        block); needs ``feat_size``.
      * ``'gap'`` — global average pooling, dropout, FC, BN1d.

    Args:
        in_channels (int): Channels of the backbone output.
        num_features (int): Embedding size. Defaults to 512.
        pooling (str): 'gdc', 'flatten' or 'gap'. Defaults to 'gdc'.
        feat_size (int | tuple, optional): Spatial size of the feature map
            (e.g. 4 for MobileNetV3 at 112x112). Defaults to None.
        dropout (float): Dropout before the FC layer. Defaults to 0.
        in_index (int): Which output of a tuple-returning backbone to use.
            Defaults to -1.
    """

    def __init__(self,
                 in_channels: int,
                 num_features: int = 512,
                 pooling: str = 'gdc',
                 feat_size: Optional[Union[int, Tuple[int, int]]] = None,
                 dropout: float = 0.0,
                 in_index: int = -1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if pooling not in ('gdc', 'flatten', 'gap'):
            raise ValueError(f"EmbeddingNeck.pooling must be 'gdc', 'flatten' "
                             f"or 'gap', got {pooling!r}")
        if pooling != 'gap' and feat_size is None:
            raise ValueError(f"EmbeddingNeck(pooling='{pooling}') needs "
                             '`feat_size`, the spatial size of the backbone '
                             'output (e.g. 4 for MobileNetV3 at 112x112).')
        if isinstance(feat_size, int):
            feat_size = (feat_size, feat_size)
        self.pooling = pooling
        self.in_index = in_index
        if pooling == 'gdc':
            self.pool = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, feat_size,
                          groups=in_channels, bias=False),
                nn.BatchNorm2d(in_channels), nn.Flatten())
            fc_in = in_channels
        elif pooling == 'flatten':
            self.pool = nn.Sequential(nn.BatchNorm2d(in_channels),
                                      nn.Flatten())
            fc_in = in_channels * feat_size[0] * feat_size[1]
        else:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            fc_in = in_channels
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(fc_in, num_features, bias=False)
        self.features = nn.BatchNorm1d(num_features)

    def forward(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]
                ) -> torch.Tensor:
        x = inputs if isinstance(inputs, torch.Tensor) \
            else inputs[self.in_index]
        return self.features(self.fc(self.dropout(self.pool(x))))

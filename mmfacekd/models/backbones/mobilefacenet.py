"""MobileFaceNet, state-dict compatible with insightface arcface_torch's
``mbf``."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmfacekd.registry import MODELS

_Pair = Tuple[int, int]


class ConvBlock(nn.Module):
    """Conv-BN-PReLU (module names ``layers.{0,1,2}`` as in insightface)."""

    def __init__(self, in_c: int, out_c: int, kernel: _Pair = (1, 1),
                 stride: _Pair = (1, 1), padding: _Pair = (0, 0),
                 groups: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel, groups=groups, stride=stride,
                      padding=padding, bias=False),
            nn.BatchNorm2d(num_features=out_c),
            nn.PReLU(num_parameters=out_c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    """Conv-BN without activation."""

    def __init__(self, in_c: int, out_c: int, kernel: _Pair = (1, 1),
                 stride: _Pair = (1, 1), padding: _Pair = (0, 0),
                 groups: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups,
                      bias=False),
            nn.BatchNorm2d(num_features=out_c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to ``groups``, depthwise, 1x1
    project."""

    def __init__(self, in_c: int, out_c: int, residual: bool = False,
                 kernel: _Pair = (3, 3), stride: _Pair = (2, 2),
                 padding: _Pair = (1, 1), groups: int = 1) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_c, out_c=groups),
            ConvBlock(groups, groups, groups=groups, kernel=kernel,
                      padding=padding, stride=stride),
            LinearBlock(groups, out_c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    """A stack of residual :class:`DepthWise` blocks."""

    def __init__(self, c: int, num_block: int, groups: int,
                 kernel: _Pair = (3, 3), stride: _Pair = (1, 1),
                 padding: _Pair = (1, 1)) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[
            DepthWise(c, c, True, kernel, stride, padding, groups)
            for _ in range(num_block)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise convolution embedding: 7x7 DW conv, FC, BN1d."""

    def __init__(self, embedding_size: int, in_channels: int = 512,
                 kernel: int = 7) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(in_channels, in_channels, groups=in_channels,
                        kernel=(kernel, kernel)),
            nn.Flatten(),
            nn.Linear(in_channels, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@MODELS.register_module()
class MobileFaceNet(BaseModule):
    """MobileFaceNet (Chen et al. 2018) as in insightface arcface_torch.

    With defaults it is insightface's ``mbf`` (``blocks=(1, 4, 6, 2)``,
    ``scale=2``); ``blocks=(2, 8, 12, 4), scale=4`` is ``mbf_large``. Names
    and shapes match insightface, so its ``backbone.pth`` loads strictly.

    Args:
        num_features (int): Embedding size. Defaults to 512.
        blocks (Sequence[int]): Residual blocks per stage. Defaults to
            (1, 4, 6, 2).
        scale (int): Width multiplier of the trunk (channels 64·scale and
            128·scale). Defaults to 2.
        expansion (Sequence[int]): Hidden widths of the bottlenecks of the
            three resolutions; insightface fixes them to (128, 256, 512).
            Smaller values give CPU-sized models. Defaults to (128, 256, 512).
        conv_sep_channels (int): Channels before the GDC embedding.
            Defaults to 512.
        fp16 (bool): Run the trunk under autocast. Defaults to False.
        dropout (float): Dropout before the GDC FC (not in insightface; 0
            keeps it out of the graph). Defaults to 0.
        input_size (int): Input side length (the GDC kernel is
            ``input_size // 16``). Defaults to 112.
        init_cfg (dict, optional): MMEngine init config. Defaults to None.
    """

    def __init__(self,
                 num_features: int = 512,
                 blocks: Sequence[int] = (1, 4, 6, 2),
                 scale: int = 2,
                 expansion: Sequence[int] = (128, 256, 512),
                 conv_sep_channels: int = 512,
                 fp16: bool = False,
                 dropout: float = 0.0,
                 input_size: int = 112,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.fp16 = fp16
        self.scale = scale
        c1, c2 = 64 * scale, 128 * scale
        e1, e2, e3 = expansion
        self.layers = nn.ModuleList()
        self.layers.append(ConvBlock(3, c1, (3, 3), (2, 2), (1, 1)))
        if blocks[0] == 1:
            self.layers.append(
                ConvBlock(c1, c1, (3, 3), (1, 1), (1, 1), groups=e1 // 2))
        else:
            self.layers.append(Residual(c1, blocks[0], groups=e1))
        self.layers.extend([
            DepthWise(c1, c1, groups=e1),
            Residual(c1, blocks[1], groups=e1),
            DepthWise(c1, c2, groups=e2),
            Residual(c2, blocks[2], groups=e2),
            DepthWise(c2, c2, groups=e3),
            Residual(c2, blocks[3], groups=e2),
        ])
        self.conv_sep = ConvBlock(c2, conv_sep_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.features = GDC(num_features, conv_sep_channels, input_size // 16)
        self._insightface_init()

    def _insightface_init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out',
                                        nonlinearity='relu')
                if m.bias is not None:
                    m.bias.data.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode='fan_out',
                                        nonlinearity='relu')
                if m.bias is not None:
                    m.bias.data.zero_()

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk up to ``conv_sep``: an (N, 512, 7, 7) feature map."""
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=self.fp16):
            x = self.forward_trunk(x)
        x = self.conv_sep(x.float() if self.fp16 else x)
        return self.features(self.dropout(x))

    def init_weights(self) -> None:
        """Keep insightface's init unless an ``init_cfg`` is set."""
        if self.init_cfg is not None:
            super().init_weights()

"""IResNet face backbone, state-dict compatible with insightface
arcface_torch."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmfacekd.registry import MODELS


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1,
                     bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation residual block BN-conv-BN-PReLU-conv-BN (+ shortcut).

    The residual is added **in place** (``out += identity``) exactly like
    insightface; record block outputs, not intermediate tensors.
    """
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.bn3(
            self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return out


@MODELS.register_module()
class IResNet(BaseModule):
    """Improved ResNet (ArcFace, Deng et al. CVPR 2019) for 112x112 faces.

    Module names, parameter shapes and layer order equal insightface
    arcface_torch's ``iresnet18/34/50/100/200``, so a released
    ``backbone.pth`` loads with ``strict=True`` and gives the same embedding.
    The output is the ``features`` BatchNorm1d embedding (not normalized).

    Args:
        depth (int): 18, 34, 50, 100 or 200.
        num_features (int): Embedding size. Defaults to 512.
        dropout (float): Dropout before the FC layer. Defaults to 0.
        fp16 (bool): Run the convolutional trunk under autocast (the FC and
            the embedding stay in float32, as in insightface).
            Defaults to False.
        base_channels (int): Width of the first stage; stages use
            ``base_channels * (1, 2, 4, 8)``. Only the default 64 matches
            insightface weights; smaller values make CPU-sized models.
            Defaults to 64.
        input_size (int): Input side length; the FC layer sees a
            ``(input_size // 16) ** 2`` grid. Defaults to 112.
        zero_init_residual (bool): Zero-init the last BN of each block.
            Defaults to False.
        init_cfg (dict, optional): MMEngine init config. Defaults to None.

    Example:
        >>> from mmfacekd.registry import MODELS
        >>> net = MODELS.build(dict(type='IResNet', depth=50))
        >>> net(torch.randn(2, 3, 112, 112)).shape
        torch.Size([2, 512])
    """
    arch_settings = {
        18: (2, 2, 2, 2),
        34: (3, 4, 6, 3),
        50: (3, 4, 14, 3),
        100: (3, 13, 30, 3),
        200: (6, 26, 60, 6),
    }

    def __init__(self,
                 depth: int = 50,
                 num_features: int = 512,
                 dropout: float = 0.0,
                 fp16: bool = False,
                 base_channels: int = 64,
                 input_size: int = 112,
                 zero_init_residual: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if depth not in self.arch_settings:
            raise KeyError(f'IResNet depth must be one of '
                           f'{sorted(self.arch_settings)}, got {depth}')
        if input_size % 16 != 0:
            raise ValueError(f'IResNet input_size must be a multiple of 16, '
                             f'got {input_size}')
        layers = self.arch_settings[depth]
        self.depth = depth
        self.fp16 = fp16
        self.inplanes = base_channels
        widths = [base_channels * m for m in (1, 2, 4, 8)]
        self.fc_scale = (input_size // 16)**2

        self.conv1 = nn.Conv2d(3, self.inplanes, 3, stride=1, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=1e-05)
        self.prelu = nn.PReLU(self.inplanes)
        self.layer1 = self._make_layer(widths[0], layers[0], stride=2)
        self.layer2 = self._make_layer(widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(widths[3], layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(widths[3], eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(widths[3] * self.fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        self._insightface_init(zero_init_residual)

    def _insightface_init(self, zero_init_residual: bool) -> None:
        """insightface's initialization (normal(0, 0.1) convs, fixed BN1d
        gamma)."""
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, IBasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, planes: int, blocks: int,
                    stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-05),
            )
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Convolutional trunk up to ``bn2``: an (N, C, 7, 7) feature map."""
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.bn2(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=self.fp16):
            x = self.forward_trunk(x)
            x = torch.flatten(x, 1)
            x = self.dropout(x)
        x = self.fc(x.float() if self.fp16 else x)
        return self.features(x)

    def init_weights(self) -> None:
        """Keep insightface's init unless an ``init_cfg`` (e.g. Pretrained)
        is set."""
        if self.init_cfg is not None:
            super().init_weights()

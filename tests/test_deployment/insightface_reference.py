"""A minimal re-statement of insightface arcface_torch's parameter naming
and forward pass for ``iresnet*`` and ``mbf`` (written from reading
``recognition/arcface_torch/backbones/{iresnet,mobilefacenet}.py``).

Each network is a plain function over a parameter dict: the first call
creates every tensor under insightface's ``state_dict()`` key (with
deterministic, well-scaled values — not insightface's init), later calls
reuse them. So ``ref = InsightfaceReference(...); ref(x)`` gives both a
``backbone.pth``-style state dict (``ref.state``) and the embedding of an
implementation that shares no code with mmfacekd's modules.
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F


class _Params:
    """Lazily created, deterministic tensors keyed by insightface names."""

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.state: Dict[str, torch.Tensor] = {}

    def _new(self, key: str, shape, kind: str) -> torch.Tensor:
        if key in self.state:
            assert tuple(self.state[key].shape) == tuple(shape), key
            return self.state[key]
        g = self.gen
        if kind == 'he':  # conv / linear weights, fan-in scaled
            fan_in = int(torch.tensor(shape[1:]).prod())
            t = torch.randn(shape, generator=g) * (2.0 / fan_in)**0.5
        elif kind == 'pos':
            t = 0.5 + torch.rand(shape, generator=g)
        elif kind == 'small':
            t = 0.1 * torch.randn(shape, generator=g)
        else:  # prelu slopes
            t = 0.1 + 0.2 * torch.rand(shape, generator=g)
        self.state[key] = t
        return t

    def conv(self, x, key, cout, k=1, s=1, p=0, groups=1):
        w = self._new(f'{key}.weight', (cout, x.shape[1] // groups, k, k),
                      'he')
        return F.conv2d(x, w, None, s, p, 1, groups)

    def bn(self, x, key, eps=1e-5):
        c = x.shape[1]
        # state_dict order of a BatchNorm: weight, bias, running stats
        weight = self._new(f'{key}.weight', (c, ), 'pos')
        bias = self._new(f'{key}.bias', (c, ), 'small')
        mean = self._new(f'{key}.running_mean', (c, ), 'small')
        var = self._new(f'{key}.running_var', (c, ), 'pos')
        self.state.setdefault(f'{key}.num_batches_tracked',
                              torch.tensor(100, dtype=torch.long))
        return F.batch_norm(x, mean, var, weight, bias, training=False,
                            eps=eps)

    def prelu(self, x, key):
        return F.prelu(x, self._new(f'{key}.weight', (x.shape[1], ),
                                    'slope'))

    def linear(self, x, key, out, bias=True):
        w = self._new(f'{key}.weight', (out, x.shape[1]), 'he')
        b = self._new(f'{key}.bias', (out, ), 'small') if bias else None
        return F.linear(x, w, b)


def iresnet_forward(P: _Params, x: torch.Tensor, layers: Sequence[int],
                    num_features: int = 512) -> torch.Tensor:
    """insightface ``IResNet``: conv1-bn1-prelu, four stages of
    ``IBasicBlock`` (bn1-conv1-bn2-prelu-conv2(stride)-bn3 + shortcut; the
    first block of each stage strides 2 and has ``downsample.{0,1}``),
    bn2, flatten, fc (with bias), ``features`` BatchNorm1d."""
    x = P.prelu(P.bn(P.conv(x, 'conv1', 64, 3, 1, 1), 'bn1'), 'prelu')
    for stage, blocks in enumerate(layers):
        planes = 64 * 2**stage
        for b in range(blocks):
            key = f'layer{stage + 1}.{b}'
            stride = 2 if b == 0 else 1
            out = P.conv(P.bn(x, f'{key}.bn1'), f'{key}.conv1', planes, 3,
                         1, 1)
            out = P.prelu(P.bn(out, f'{key}.bn2'), f'{key}.prelu')
            out = P.bn(P.conv(out, f'{key}.conv2', planes, 3, stride, 1),
                       f'{key}.bn3')
            if b == 0:
                x = P.bn(P.conv(x, f'{key}.downsample.0', planes, 1,
                                stride), f'{key}.downsample.1')
            x = out + x
    x = torch.flatten(P.bn(x, 'bn2'), 1)
    x = P.linear(x, 'fc', num_features)
    return P.bn(x, 'features')


def _conv_block(P, x, key, cout, k=1, s=1, p=0, groups=1):
    """ConvBlock: ``layers.{0: conv, 1: bn, 2: prelu}``."""
    x = P.bn(P.conv(x, f'{key}.layers.0', cout, k, s, p, groups),
             f'{key}.layers.1')
    return P.prelu(x, f'{key}.layers.2')


def _linear_block(P, x, key, cout, k=1, s=1, p=0, groups=1):
    """LinearBlock: ``layers.{0: conv, 1: bn}``."""
    return P.bn(P.conv(x, f'{key}.layers.0', cout, k, s, p, groups),
                f'{key}.layers.1')


def _depthwise(P, x, key, cout, hidden, stride, residual):
    """DepthWise: 1x1 ConvBlock to ``hidden``, 3x3 depthwise ConvBlock,
    1x1 LinearBlock; ``layers.{0,1,2}``."""
    y = _conv_block(P, x, f'{key}.layers.0', hidden)
    y = _conv_block(P, y, f'{key}.layers.1', hidden, 3, stride, 1, hidden)
    y = _linear_block(P, y, f'{key}.layers.2', cout)
    return x + y if residual else y


def _residual(P, x, key, n, hidden):
    for i in range(n):
        x = _depthwise(P, x, f'{key}.layers.{i}', x.shape[1], hidden, 1,
                       True)
    return x


def mbf_forward(P: _Params, x: torch.Tensor, blocks=(1, 4, 6, 2),
                scale: int = 2, num_features: int = 512) -> torch.Tensor:
    """insightface ``MobileFaceNet`` (``get_mbf``): ``layers.0..7``,
    ``conv_sep`` and the GDC ``features.layers.{0: LinearBlock 7x7 dw,
    2: Linear (no bias), 3: BatchNorm1d}``."""
    c1, c2 = 64 * scale, 128 * scale
    x = _conv_block(P, x, 'layers.0', c1, 3, 2, 1)
    if blocks[0] == 1:
        x = _conv_block(P, x, 'layers.1', c1, 3, 1, 1, groups=64)
    else:
        x = _residual(P, x, 'layers.1', blocks[0], 128)
    x = _depthwise(P, x, 'layers.2', c1, 128, 2, False)
    x = _residual(P, x, 'layers.3', blocks[1], 128)
    x = _depthwise(P, x, 'layers.4', c2, 256, 2, False)
    x = _residual(P, x, 'layers.5', blocks[2], 256)
    x = _depthwise(P, x, 'layers.6', c2, 512, 2, False)
    x = _residual(P, x, 'layers.7', blocks[3], 256)
    x = _conv_block(P, x, 'conv_sep', 512)
    x = _linear_block(P, x, 'features.layers.0', 512, 7, groups=512)
    x = P.linear(torch.flatten(x, 1), 'features.layers.2', num_features,
                 bias=False)
    return P.bn(x, 'features.layers.3')


class InsightfaceReference:
    """``arch='iresnet'`` (``layers``) or ``'mbf'`` (``blocks``, ``scale``)
    with deterministic weights; ``state`` is its ``backbone.pth``."""

    def __init__(self, arch: str, seed: int = 0, **kwargs) -> None:
        self.arch, self.kwargs = arch, kwargs
        self.P = _Params(seed)
        self(torch.zeros(1, 3, 112, 112))  # create every parameter

    @property
    def state(self) -> Dict[str, torch.Tensor]:
        return dict(self.P.state)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        fn = iresnet_forward if self.arch == 'iresnet' else mbf_forward
        return fn(self.P, x, **self.kwargs)

"""The input contract of an exported embedding network.

An exported graph takes aligned face crops as ``float32`` NCHW RGB. With
``normalization_baked`` the graph takes raw ``[0, 255]`` pixel values and
applies ``(x - mean) / std`` itself; otherwise the caller normalizes. The
model's own input size (the CPU demo configs train at 64x64 behind
``data_preprocessor.resize_to``) is an internal detail of the graph: the
graph input is always the crop size of the data pipeline (112x112).

The spec travels in the ONNX file's ``metadata_props`` (keys
``mmfacekd.*``), so every later tool (quantization, benchmarks, a phone
app) reads the contract from the file instead of from a config.
"""
import json
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

METADATA_PREFIX = 'mmfacekd.'


class InputSpecError(ValueError):
    """The input size/normalization cannot be determined; names the source
    and the fix."""


@dataclass(frozen=True)
class InputSpec:
    """Input contract of an embedding graph.

    Args:
        height, width (int): Size of the crops the graph takes.
        mean, std (float): Per-channel normalization ``(x - mean) / std``.
        normalization_baked (bool): The graph applies the normalization
            (takes ``[0, 255]`` floats); otherwise the caller does.
        network_size (tuple, optional): (H, W) the network runs at when it
            differs from the crop size (area resize inside the graph).
        bgr_to_rgb (bool): The model swaps channels first (its
            ``data_preprocessor.bgr_to_rgb``); the graph does too.
        input_name, output_name (str): Graph tensor names.
        embedding_dim (int): Length of the output embedding (0 = unknown).
        opset (int): ONNX opset of the graph (0 = not exported yet).
    """
    height: int
    width: int
    mean: float = 127.5
    std: float = 128.0
    normalization_baked: bool = False
    network_size: Optional[Tuple[int, int]] = None
    bgr_to_rgb: bool = False
    input_name: str = 'input'
    output_name: str = 'embedding'
    embedding_dim: int = 0
    opset: int = 0

    @property
    def size(self) -> Tuple[int, int]:
        return self.height, self.width

    def replace(self, **changes) -> 'InputSpec':
        fields = asdict(self)
        fields.update(changes)
        return InputSpec(**fields)

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 RGB crops → the graph's float32 input."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f'expected (N, H, W, 3) RGB crops, got shape '
                             f'{images.shape}')
        if tuple(images.shape[1:3]) != self.size:
            raise ValueError(
                f'crops are {images.shape[2]}x{images.shape[1]}, the graph '
                f'takes {self.width}x{self.height}; align/resize the faces '
                'to the input size first.')
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2),
                                 dtype=np.float32)
        if not self.normalization_baked:
            x = (x - np.float32(self.mean)) / np.float32(self.std)
        return x

    def describe(self) -> str:
        norm = (f'normalization (x - {self.mean:g}) / {self.std:g} '
                + ('inside the graph (input: float RGB 0..255)'
                   if self.normalization_baked else 'by the caller'))
        net = (f', network runs at {self.network_size[1]}x'
               f'{self.network_size[0]} (area resize in the graph)'
               if self.network_size else '')
        return (f'input "{self.input_name}" float32 NCHW RGB '
                f'{self.width}x{self.height}, dynamic batch; {norm}{net}')

    def to_metadata(self) -> Dict[str, str]:
        """``metadata_props`` entries (all strings)."""
        meta = {
            'input_layout': 'NCHW',
            'input_color': 'RGB',
            'input_size': f'{self.height}x{self.width}',
            'normalization': ('baked' if self.normalization_baked else
                              f'(x-{self.mean:g})/{self.std:g}'),
            'input_spec': json.dumps(asdict(self), sort_keys=True),
            'opset': str(self.opset),
        }
        return {METADATA_PREFIX + k: v for k, v in meta.items()}

    @classmethod
    def from_metadata(cls, meta: Dict[str, str],
                      source: str = '<model>') -> 'InputSpec':
        key = METADATA_PREFIX + 'input_spec'
        if key not in meta:
            raise InputSpecError(
                f'{source} has no "{key}" metadata, so its input size and '
                'normalization are unknown. Export it with '
                'tools/deployment/pytorch2onnx.py (which records them), or '
                'state the contract in Python: OnnxEmbedder(path, '
                'spec=InputSpec(height=112, width=112, mean=127.5, '
                'std=128.0)).')
        fields = json.loads(meta[key])
        if fields.get('network_size') is not None:
            fields['network_size'] = tuple(fields['network_size'])
        return cls(**fields)


def _pipeline_size(pipeline: Sequence) -> Optional[Tuple[int, int]]:
    for step in pipeline or ():
        if str(step.get('type', '')).endswith('LoadFaceImage') and \
                step.get('expected_size'):
            h, w = step['expected_size']
            return int(h), int(w)
    return None


def _declared_size(backbone_cfg: dict) -> Optional[Tuple[int, int]]:
    """The input size a backbone config declares (``input_size`` of
    IResNet/MobileFaceNet, ``img_size`` of ViTs), defaults included."""
    from mmfacekd.registry import MODELS
    for key in ('input_size', 'img_size'):
        if key in backbone_cfg:
            v = backbone_cfg[key]
            return (v, v) if isinstance(v, int) else tuple(v)[:2]
    try:
        import inspect
        cls = MODELS.get(backbone_cfg['type'])
        params = inspect.signature(cls.__init__).parameters if cls else {}
    except (KeyError, TypeError, ValueError):
        return None
    for key in ('input_size', 'img_size'):
        if key in params and isinstance(params[key].default, int):
            v = params[key].default
            return v, v
    return None


def resolve_input_spec(cfg, model_cfg: dict, preprocessor: dict,
                       shape: Optional[Sequence[int]] = None,
                       bake_normalization: bool = False,
                       source: str = '<config>') -> InputSpec:
    """Input size and normalization of ``model_cfg`` (a FaceRecognizer).

    The crop size is, in order: ``shape``; the ``expected_size`` of the
    config's ``test_pipeline`` ``LoadFaceImage``; the size the backbone
    declares (``input_size``/``img_size``, defaults included) when the
    preprocessor does not resize. Otherwise :class:`InputSpecError` names
    the config and the fix (``--shape H W``).
    """
    size = tuple(shape) if shape else None
    if size is not None and len(size) != 2:
        raise InputSpecError(f'--shape takes H W, got {list(shape)}')
    resize = preprocessor.get('resize_to')
    if size is None:
        size = _pipeline_size(cfg.get('test_pipeline'))
    if size is None and resize is None:
        size = _declared_size(model_cfg['backbone'])
    if size is None:
        raise InputSpecError(
            f'{source}: missing input size: test_pipeline has no '
            "LoadFaceImage(expected_size=...) and the backbone "
            f"({model_cfg['backbone'].get('type')}) declares none; pass "
            '--shape H W (112 112 for ArcFace-aligned crops).')
    network = None
    if resize is not None:
        r = (resize, resize) if isinstance(resize, int) else tuple(resize)
        network = None if tuple(r) == tuple(size) else tuple(int(v)
                                                             for v in r)
    mean, std = preprocessor.get('mean', 127.5), preprocessor.get('std', 128.)
    for name, v in (('mean', mean), ('std', std)):
        if isinstance(v, (list, tuple)):
            if len(set(v)) != 1:
                raise InputSpecError(
                    f'{source}: data_preprocessor.{name}={list(v)} differs '
                    'per channel; mmfacekd exports one value for all three.')
    mean = float(mean[0] if isinstance(mean, (list, tuple)) else mean)
    std = float(std[0] if isinstance(std, (list, tuple)) else std)
    return InputSpec(height=int(size[0]), width=int(size[1]), mean=mean,
                     std=std, normalization_baked=bake_normalization,
                     network_size=network,
                     bgr_to_rgb=bool(preprocessor.get('bgr_to_rgb', False)))

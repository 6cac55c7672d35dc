"""Config + checkpoint → checked ONNX file (what ``pytorch2onnx.py`` does)."""
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config

from .embedding_graph import EmbeddingGraph
from .input_spec import InputSpec, InputSpecError, resolve_input_spec
from .model_loading import build_embedding_model, recognizer_config
from .onnx_export import DEFAULT_OPSET, check_opset, export_onnx
from .parity import MIN_COSINE, ParityReport, check_parity


def _dry_run(graph: EmbeddingGraph, source: str) -> None:
    spec = graph.spec
    try:
        with torch.no_grad():
            out = graph(torch.zeros(1, 3, *spec.size))
    except Exception as err:  # noqa: BLE001 - re-raised with the fix
        raise InputSpecError(
            f'{source}: the model does not run on {spec.width}x'
            f'{spec.height} crops (network input '
            f'{(spec.network_size or spec.size)[::-1]}): '
            f'{str(err).splitlines()[0][:200]}. Pass the crop size the '
            'model was trained for with --shape H W, or fix the backbone '
            'input_size/img_size (or the neck feat_size) in the config.'
        ) from err
    if out.dim() != 2:
        raise InputSpecError(
            f'{source}: the network gives a {tuple(out.shape)} tensor, not '
            '(N, D) embeddings; add an EmbeddingNeck to the config.')


def build_export_graph(config: Union[str, Config],
                       checkpoint: Optional[Union[str, dict]] = None,
                       shape: Optional[Sequence[int]] = None,
                       bake_normalization: bool = False
                       ) -> Tuple[EmbeddingGraph, nn.Module]:
    """``(graph to export, the recognizer with its data preprocessor)``."""
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    source = config if isinstance(config, str) else (cfg.filename or
                                                     '<config>')
    model_cfg, pre = recognizer_config(cfg)
    spec = resolve_input_spec(cfg, model_cfg, pre, shape,
                              bake_normalization, source)
    recognizer, _ = build_embedding_model(cfg, checkpoint)
    graph = EmbeddingGraph(recognizer, spec).eval()
    _dry_run(graph, source)
    return graph, recognizer


def export_and_check(config: Union[str, Config],
                     checkpoint: Optional[Union[str, dict]], out: str,
                     images: Optional[Union[
                         np.ndarray, Callable[[], np.ndarray]]] = None,
                     opset: int = DEFAULT_OPSET,
                     shape: Optional[Sequence[int]] = None,
                     bake_normalization: bool = False,
                     min_cosine: float = MIN_COSINE
                     ) -> Tuple[InputSpec, Optional[ParityReport]]:
    """Export, then compare onnxruntime with PyTorch on ``images``
    ((N, H, W, 3) uint8 crops); raises ParityError below ``min_cosine``.

    The cheap checks come first, so that one run names the first real
    problem: the opset, then the checkpoint against the config, then the
    images (``images`` may be a callable that loads them), and only then
    is ``out`` written.
    """
    check_opset(opset)
    graph, recognizer = build_export_graph(config, checkpoint, shape,
                                           bake_normalization)
    if callable(images):
        images = images()
    meta = dict(config=str(config if isinstance(config, str) else
                           config.filename),
                checkpoint=str(checkpoint) if isinstance(checkpoint, str)
                else '')
    spec = export_onnx(graph, out, opset, meta)
    report = None
    if images is not None and len(images):
        report = check_parity(recognizer, out, images, min_cosine)
    return spec, report

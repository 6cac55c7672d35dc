"""Parameters and FLOPs of a config's embedding network (backbone + neck).

Counted by MMEngine's ``mmengine.analysis.get_model_complexity_info``
(fvcore's tracing counter). Its "flops" are **multiply-accumulates**: a
convolution or linear layer counts ``in × out × kernel`` per output
position, one per fused multiply-add — the convention of ptflops, which
insightface's ``arcface_torch/flops.py`` uses for its published "GFLOPs".
Element-wise ops it has no handle for (BatchNorm, PReLU, residual adds) are
not counted (MMEngine logs them as unsupported); they add well under 1 % for
IResNet/MobileFaceNet. The head is not part of the embedding network.
"""
from typing import Optional, Sequence, Union

import torch
from mmengine.config import Config

from .embedding_graph import EmbeddingGraph
from .input_spec import resolve_input_spec
from .model_loading import build_embedding_model, recognizer_config


def model_complexity(config: Union[str, Config],
                     shape: Optional[Sequence[int]] = None) -> dict:
    """``dict(params, flops, input_size, params_str, flops_str, table)``
    of the embedding network at the size it runs at (the config's
    ``resize_to`` if set, else the crop size)."""
    from mmengine.analysis import get_model_complexity_info
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    source = config if isinstance(config, str) else '<config>'
    model_cfg, pre = recognizer_config(cfg)
    spec = resolve_input_spec(cfg, model_cfg, pre, shape, source=source)
    size = spec.network_size or spec.size
    spec = spec.replace(height=size[0], width=size[1], network_size=None,
                        normalization_baked=False, bgr_to_rgb=False)
    recognizer, _ = build_embedding_model(cfg)
    net = EmbeddingGraph(recognizer, spec).eval()
    with torch.no_grad():
        info = get_model_complexity_info(
            net, inputs=(torch.zeros(1, 3, *size), ), show_table=True,
            show_arch=False)
    return dict(params=int(info['params']), flops=int(info['flops']),
                input_size=tuple(size), params_str=info['params_str'],
                flops_str=info['flops_str'], table=info['out_table'])

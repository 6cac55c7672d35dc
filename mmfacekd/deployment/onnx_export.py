"""Export an :class:`EmbeddingGraph` to ONNX with a dynamic batch axis.

Uses torch's default (``torch.export``-based, ``dynamo=True``) exporter,
which needs ``onnxscript`` (requirements/deploy.txt). The input contract
(:class:`InputSpec`) and the provenance go into ``metadata_props``.
"""
import contextlib
import io
import os
import os.path as osp
import warnings
from functools import lru_cache
from typing import Dict, Optional

import torch

from .embedding_graph import EmbeddingGraph
from .input_spec import METADATA_PREFIX, InputSpec

DEFAULT_OPSET = 18


class OpsetError(ValueError):
    """The requested opset is not available; names the supported range."""


def _session_accepts(opset: int) -> bool:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node('Relu', ['x'], ['y'])],
                              'probe', [x], [y])
    model = helper.make_model(graph,
                              opset_imports=[helper.make_opsetid('', opset)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    try:
        ort.InferenceSession(model.SerializeToString(),
                             providers=['CPUExecutionProvider'])
    except Exception:  # noqa: BLE001 - any refusal means "not supported"
        return False
    return True


@lru_cache(maxsize=None)
def max_runtime_opset() -> int:
    """Highest default-domain opset the installed onnxruntime loads (probed
    with a one-node graph; onnxruntime exposes no constant for it)."""
    import onnx
    for opset in range(onnx.defs.onnx_opset_version() + 2, 6, -1):
        if _session_accepts(opset):
            return opset
    return 0


def check_opset(opset: int) -> None:
    """Raise :class:`OpsetError` unless torch's exporter, onnx and
    onnxruntime all support ``opset``."""
    import onnx
    import onnxruntime as ort
    top_onnx = onnx.defs.onnx_opset_version()
    top_ort = max_runtime_opset()
    low = 18  # torch.export-based exporter: opset 18 and newer
    if not low <= opset <= min(top_onnx, top_ort):
        raise OpsetError(
            f'--opset {opset} is not available: torch\'s exporter writes '
            f'opset >= {low}, onnx {onnx.__version__} knows up to '
            f'{top_onnx}, onnxruntime {ort.__version__} runs up to '
            f'{top_ort}. Pass --opset between {low} and '
            f'{min(top_onnx, top_ort)} (default {DEFAULT_OPSET}).')


def export_onnx(graph: EmbeddingGraph, out: str,
                opset: int = DEFAULT_OPSET,
                extra_metadata: Optional[Dict[str, str]] = None
                ) -> InputSpec:
    """Write ``graph`` to ``out``; return the spec recorded in it.

    The batch axis is dynamic (``batch``); height and width are fixed to
    ``graph.spec``. Raises :class:`OpsetError` for an unsupported opset.
    """
    import onnx
    check_opset(opset)
    spec = graph.spec
    graph = graph.eval()
    dummy = torch.zeros(2, 3, *spec.size)
    if spec.normalization_baked:
        dummy += 127.0
    with torch.no_grad():
        dim = int(graph(dummy).shape[1])
    spec = spec.replace(opset=opset, embedding_dim=dim)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    batch = torch.export.Dim('batch', min=1, max=4096)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), warnings.catch_warnings():
            # the exporter prints its progress and warns about torch's
            # own internals (treespec deprecations)
            warnings.simplefilter('ignore', FutureWarning)
            program = torch.onnx.export(
                graph, (dummy, ), dynamo=True, opset_version=opset,
                input_names=[spec.input_name],
                output_names=[spec.output_name],
                dynamic_shapes=({0: batch}, ), verbose=False)
    except Exception:
        print(log.getvalue())
        raise
    program.save(out)
    model = onnx.load(out)
    meta = spec.to_metadata()
    meta.update({METADATA_PREFIX + k: str(v)
                 for k, v in (extra_metadata or {}).items()})
    write_metadata(model, meta)
    onnx.save(model, out)
    return spec


def write_metadata(model, meta: Dict[str, str]) -> None:
    """Set ``metadata_props`` entries of an ``onnx.ModelProto`` (replacing
    entries of the same key)."""
    keep = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)


def read_metadata(path: str) -> Dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict."""
    import onnx
    model = onnx.load(path, load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}

"""From checkpoint to phone: ONNX export, parity checks, quantization,
insightface conversion (docs/deployment.md).

Needs the deployment requirements (``requirements/deploy.txt``: onnx,
onnxruntime, onnxscript); ``import mmfacekd`` does not import this package.
"""
from .bn_recalibration import recalibrate_batchnorm
from .embedding_graph import AreaResize, EmbeddingGraph, area_resize_matrix
from .export import build_export_graph, export_and_check
from .face_images import load_face_images, load_pair_set
from .input_spec import InputSpec, InputSpecError, resolve_input_spec
from .insightface_convert import (
    ConversionError,
    convert_insightface,
    merge_fc_shards,
    order_shards,
    save_converted,
)
from .model_loading import (
    CheckpointMismatchError,
    build_embedding_model,
    embedding_state_dict,
    load_embedding_weights,
    recognizer_config,
)
from .onnx_embedder import OnnxEmbedder
from .onnx_export import (
    DEFAULT_OPSET,
    OpsetError,
    check_opset,
    export_onnx,
    max_runtime_opset,
    read_metadata,
)
from .parity import (
    MIN_COSINE,
    ParityError,
    ParityReport,
    check_parity,
    compare_embeddings,
    cosine_rows,
    torch_embeddings,
)
from .quantization import (
    MODES,
    FaceCalibrationReader,
    quantize,
    quantized_path,
)

__all__ = [
    'recalibrate_batchnorm', 'AreaResize', 'EmbeddingGraph',
    'area_resize_matrix',
    'build_export_graph', 'export_and_check', 'load_face_images',
    'load_pair_set', 'InputSpec', 'InputSpecError', 'resolve_input_spec',
    'ConversionError', 'convert_insightface', 'merge_fc_shards',
    'order_shards', 'save_converted', 'CheckpointMismatchError',
    'build_embedding_model', 'embedding_state_dict',
    'load_embedding_weights', 'recognizer_config', 'OnnxEmbedder',
    'DEFAULT_OPSET', 'OpsetError', 'check_opset', 'export_onnx',
    'max_runtime_opset', 'read_metadata', 'MIN_COSINE', 'ParityError',
    'ParityReport', 'check_parity', 'compare_embeddings', 'cosine_rows',
    'torch_embeddings', 'MODES', 'FaceCalibrationReader', 'quantize',
    'quantized_path'
]

"""Post-training quantization of an exported embedding graph.

* ``dynamic`` — onnxruntime ``quantize_dynamic``: int8 weights, activation
  scales computed at run time (no data needed);
* ``static`` — onnxruntime ``quantize_static`` (QDQ format, per-channel
  int8 weights, uint8 activations, MinMax calibration) on real training
  crops fed by :class:`FaceCalibrationReader`;
* ``fp16`` — ``onnxruntime.transformers.float16.convert_float_to_float16``
  (shipped and maintained with onnxruntime; the same converter as
  onnxconverter-common's ``float16``), float32 graph inputs/outputs kept.

Every output keeps the source's ``mmfacekd.*`` metadata plus
``mmfacekd.quantization``.
"""
import os
import os.path as osp
import shutil
import tempfile
from typing import Iterator, Optional

import numpy as np

from .input_spec import METADATA_PREFIX, InputSpec
from .onnx_export import read_metadata, write_metadata

MODES = ('dynamic', 'static', 'fp16')


def _calibration_reader_base():
    from onnxruntime.quantization import CalibrationDataReader
    return CalibrationDataReader


class FaceCalibrationReader(_calibration_reader_base()):
    """Feeds (N, H, W, 3) uint8 crops, prepared by ``spec``, in batches.

    Args:
        images (np.ndarray): Calibration crops (training images).
        spec (InputSpec): The graph's input contract.
        batch_size (int): Defaults to 16.
    """

    def __init__(self, images: np.ndarray, spec: InputSpec,
                 batch_size: int = 16) -> None:
        self.images, self.spec, self.batch_size = images, spec, batch_size
        self._it: Optional[Iterator] = None
        self.rewind()

    def _batches(self) -> Iterator[dict]:
        for i in range(0, len(self.images), self.batch_size):
            x = self.spec.prepare(self.images[i:i + self.batch_size])
            yield {self.spec.input_name: x}

    def get_next(self) -> Optional[dict]:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._batches()


def quantized_path(model: str, mode: str,
                   out_dir: Optional[str] = None) -> str:
    """``<out_dir or model's folder>/<stem>_<mode>.onnx``."""
    stem = osp.splitext(osp.basename(model))[0]
    return osp.join(out_dir or osp.dirname(osp.abspath(model)),
                    f'{stem}_{mode}.onnx')


def _copy_metadata(src: str, dst: str, mode: str) -> None:
    import onnx
    meta = read_metadata(src)
    meta[METADATA_PREFIX + 'quantization'] = mode
    model = onnx.load(dst)
    write_metadata(model, meta)
    onnx.save(model, dst)


def _preprocessed(src: str, tmp: str) -> str:
    """onnxruntime's recommended pre-processing (shape inference +
    graph optimization) before int8 quantization; the source if it
    fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process
    out = osp.join(tmp, 'pre.onnx')
    try:
        quant_pre_process(src, out)
    except Exception:  # noqa: BLE001 - optional step, fall back to src
        return src
    return out


def quantize(src: str, dst: str, mode: str,
             calibration: Optional[np.ndarray] = None,
             per_channel: bool = True) -> str:
    """Write the ``mode`` version of ``src`` to ``dst``; return ``dst``.

    ``calibration`` (uint8 crops) is required for ``static``.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    if mode not in MODES:
        raise ValueError(f'quantization mode {mode!r}; use one of {MODES}')
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='mmfacekd_quant_')
    try:
        if mode == 'dynamic':
            quantize_dynamic(_preprocessed(src, tmp), dst,
                             weight_type=QuantType.QInt8,
                             per_channel=per_channel)
        elif mode == 'static':
            if calibration is None or not len(calibration):
                raise ValueError('static quantization needs calibration '
                                 'images (--calib-images N)')
            spec = InputSpec.from_metadata(read_metadata(src), src)
            quantize_static(
                _preprocessed(src, tmp), dst,
                FaceCalibrationReader(calibration, spec),
                quant_format=QuantFormat.QDQ, per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax)
        else:
            import onnx
            from onnxruntime.transformers.float16 import (
                convert_float_to_float16,
            )
            model = convert_float_to_float16(onnx.load(src),
                                             keep_io_types=True)
            onnx.save(model, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _copy_metadata(src, dst, mode)
    return dst

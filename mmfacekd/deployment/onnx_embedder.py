"""Run an exported embedding graph with onnxruntime on uint8 face crops."""
import os.path as osp
from typing import Optional

import numpy as np

from .input_spec import InputSpec
from .onnx_export import read_metadata


class OnnxEmbedder:
    """An onnxruntime session plus the input contract read from the file.

    Args:
        path (str): The ``.onnx`` file (written by ``pytorch2onnx.py`` or
            ``quantize_onnx.py``, which keep the ``mmfacekd.*`` metadata).
        spec (InputSpec, optional): Overrides the recorded contract (for
            graphs exported elsewhere).
        threads (int, optional): ``intra_op_num_threads``; None: default.
        providers (list, optional): Defaults to the CPU provider.
    """

    def __init__(self, path: str, spec: Optional[InputSpec] = None,
                 threads: Optional[int] = None,
                 providers: Optional[list] = None) -> None:
        import onnxruntime as ort
        if not osp.isfile(path):
            raise FileNotFoundError(f'ONNX model {path} not found')
        self.path = path
        self.spec = spec or InputSpec.from_metadata(read_metadata(path),
                                                    path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                path, opts, providers=providers or ['CPUExecutionProvider'])
        except Exception as err:  # noqa: BLE001 - re-raised with context
            raise RuntimeError(
                f'onnxruntime {ort.__version__} cannot load {path}: '
                f'{str(err).splitlines()[0][:300]}. If it names the opset, '
                're-export with a lower --opset.') from err
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        """Embeddings of an already prepared float32 NCHW batch."""
        return self.session.run(None, {self.input_name: x})[0]

    def embed(self, images: np.ndarray, batch_size: int = 64,
              flip: bool = False) -> np.ndarray:
        """(N, D) float32 embeddings of (N, H, W, 3) uint8 RGB crops; with
        ``flip`` the sum ``f(x) + f(flip(x))`` of the verification
        protocol."""
        out = []
        for i in range(0, len(images), batch_size):
            x = self.spec.prepare(images[i:i + batch_size])
            e = self.run(x)
            if flip:
                e = e + self.run(np.ascontiguousarray(x[..., ::-1]))
            out.append(e.astype(np.float32))
        return np.concatenate(out)

"""PyTorch vs onnxruntime embeddings on real crops.

The PyTorch side is the recognizer behind its own data preprocessor — the
path ``tools/test.py`` takes (``FaceDataPreprocessor`` then
``extract_feat``) — so the check also covers the normalization and resize
the exported graph re-implements.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .onnx_embedder import OnnxEmbedder

MIN_COSINE = 0.9999


class ParityError(RuntimeError):
    """The exported graph's embeddings differ from PyTorch's."""


@dataclass
class ParityReport:
    """``max_abs_diff`` over all embedding entries, ``min_cosine`` over
    images, ``max_abs_ref`` the largest PyTorch entry (for scale)."""
    num_images: int
    max_abs_diff: float
    min_cosine: float
    max_abs_ref: float

    def __str__(self) -> str:
        return (f'{self.num_images} images: max |onnx - torch| = '
                f'{self.max_abs_diff:.3g} (largest |torch| entry '
                f'{self.max_abs_ref:.3g}), min cosine = '
                f'{self.min_cosine:.7f}')


@torch.no_grad()
def torch_embeddings(recognizer: nn.Module, images: np.ndarray,
                     batch_size: int = 64) -> np.ndarray:
    """``extract_feat`` of (N, H, W, 3) uint8 RGB crops behind the model's
    data preprocessor (no flip)."""
    recognizer.eval()
    out = []
    for i in range(0, len(images), batch_size):
        batch = [torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)))
                 for im in images[i:i + batch_size]]
        data = recognizer.data_preprocessor(dict(inputs=batch), False)
        out.append(recognizer.extract_feat(data['inputs']).float().numpy())
    return np.concatenate(out)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity, in float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) *
                             np.linalg.norm(b, axis=1) + 1e-300)


def compare_embeddings(ref: np.ndarray, got: np.ndarray) -> ParityReport:
    return ParityReport(len(ref), float(np.abs(ref - got).max()),
                        float(cosine_rows(ref, got).min()),
                        float(np.abs(ref).max()))


def check_parity(recognizer: nn.Module, onnx_path: str, images: np.ndarray,
                 min_cosine: float = MIN_COSINE,
                 batch_size: int = 32) -> ParityReport:
    """Compare the two on ``images``; raise :class:`ParityError` below
    ``min_cosine``."""
    ref = torch_embeddings(recognizer, images, batch_size)
    got = OnnxEmbedder(onnx_path).embed(images, batch_size)
    report = compare_embeddings(ref, got)
    if not report.min_cosine >= min_cosine:
        raise ParityError(
            f'{onnx_path}: onnxruntime embeddings differ from PyTorch: '
            f'{report}, below the required cosine {min_cosine}. The graph '
            'is not a faithful export; check the --opset and that the '
            'config matches the checkpoint (a model in train mode, e.g. '
            'active dropout, also fails here).')
    return report

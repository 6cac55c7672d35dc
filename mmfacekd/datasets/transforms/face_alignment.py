"""5-point similarity alignment onto the 112x112 ArcFace template."""
import cv2
import numpy as np
from mmcv.transforms import BaseTransform

from mmfacekd.registry import TRANSFORMS
from mmfacekd.structures.face_template import ARCFACE_TEMPLATE_112

__all__ = ['estimate_similarity', 'AlignFace']


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale,
    translation) mapping ``src`` points onto ``dst`` (Umeyama, 1991).

    Args:
        src, dst (ndarray): (K, 2) corresponding points, K >= 2.

    Returns:
        ndarray: the (2, 3) matrix ``M`` with ``dst ≈ src @ M[:, :2].T +
        M[:, 2]``, as ``cv2.warpAffine`` takes it.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 \
            or len(src) < 2:
        raise ValueError(f'need two (K, 2) point sets, K >= 2; got '
                         f'{src.shape} and {dst.shape}')
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1  # a reflection is not a similarity
    rot = u @ sign @ vt
    var_s = (s**2).sum() / len(src)
    scale = (sig * np.diag(sign)).sum() / var_s
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


@TRANSFORMS.register_module()
class AlignFace(BaseTransform):
    """Warp ``img`` so its five ``landmarks`` land on the ArcFace template.

    insightface's alignment for IJB and MegaFace images: a similarity
    transform estimated from the 5 landmarks (left eye, right eye, nose, left
    and right mouth corner; ``results['landmarks']``, (5, 2) in pixels) onto
    the 112x112 template (docs/formats.md §6), applied with ``cv2.warpAffine``
    (bilinear, zero border). Updates ``img``, ``img_shape`` and
    ``landmarks`` (now on the template).

    Args:
        output_size (int): Output side; the template is scaled by
            ``output_size / 112``. Defaults to 112.
    """

    def __init__(self, output_size: int = 112) -> None:
        self.output_size = int(output_size)
        self.template = ARCFACE_TEMPLATE_112 * (self.output_size / 112.0)

    def transform(self, results: dict) -> dict:
        if results.get('landmarks') is None:
            raise KeyError(
                f"AlignFace needs 'landmarks' (5x2) for "
                f"{results.get('img_source', results.get('img_path'))}; "
                'the dataset must provide the 5 points of each image.')
        pts = np.asarray(results['landmarks'], np.float64).reshape(5, 2)
        m = estimate_similarity(pts, self.template)
        size = (self.output_size, self.output_size)
        results['img'] = cv2.warpAffine(results['img'], m, size,
                                        flags=cv2.INTER_LINEAR,
                                        borderValue=0.0)
        results['img_shape'] = size
        results['landmarks'] = (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(output_size={self.output_size})'

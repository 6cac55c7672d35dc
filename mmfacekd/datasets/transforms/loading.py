"""Decode face images (encoded bytes or a file path) to RGB uint8 arrays."""
from typing import Optional

import cv2
import numpy as np
from mmcv.transforms import BaseTransform

from mmfacekd.registry import TRANSFORMS


class ImageDecodeError(ValueError):
    """An image could not be decoded; the message names its source."""


def decode_face_image(buf: bytes, source: str = '<bytes>',
                      to_rgb: bool = True) -> np.ndarray:
    """Decode JPEG/PNG bytes with OpenCV; RGB like mxnet's ``imdecode``."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    img = cv2.imdecode(arr, cv2.IMREAD_COLOR) if arr.size else None
    if img is None:
        raise ImageDecodeError(
            f'Could not decode the image of {source} ({len(buf)} bytes). The '
            'record is corrupt or not JPEG/PNG; remove it from the set or '
            're-create the file.')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if to_rgb else img


@TRANSFORMS.register_module()
class LoadFaceImage(BaseTransform):
    """Decode ``results['img_bytes']`` (or read ``img_path``) into ``img``.

    Added keys: ``img`` (H, W, 3 uint8, RGB by default), ``img_shape``,
    ``ori_shape``. ``img_bytes`` is dropped after decoding.

    Args:
        to_rgb (bool): Convert OpenCV's BGR to RGB, which insightface's
            released models expect. Defaults to True.
        expected_size (tuple, optional): (H, W) every image must have
            (aligned 112x112 crops); a mismatch is an error naming the
            source. Defaults to None (no check).
    """

    def __init__(self, to_rgb: bool = True,
                 expected_size: Optional[tuple] = None) -> None:
        self.to_rgb = to_rgb
        self.expected_size = tuple(expected_size) if expected_size else None

    def transform(self, results: dict) -> dict:
        source = results.get('img_source', results.get('img_path', '<bytes>'))
        buf = results.pop('img_bytes', None)
        if buf is None:
            with open(results['img_path'], 'rb') as f:
                buf = f.read()
        img = decode_face_image(buf, source, self.to_rgb)
        if self.expected_size and img.shape[:2] != self.expected_size:
            raise ImageDecodeError(
                f'{source}: image is {img.shape[1]}x{img.shape[0]}, expected '
                f'{self.expected_size[1]}x{self.expected_size[0]} aligned '
                'crops; align the faces first (5-point similarity transform).')
        results['img'] = img
        results['img_shape'] = results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(to_rgb={self.to_rgb})'

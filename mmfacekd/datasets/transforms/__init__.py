from .formatting import PackFaceInputs
from .loading import ImageDecodeError, LoadFaceImage, decode_face_image

__all__ = ['LoadFaceImage', 'PackFaceInputs', 'decode_face_image',
           'ImageDecodeError']

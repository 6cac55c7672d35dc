from .face_alignment import AlignFace, estimate_similarity
from .formatting import PackFaceInputs
from .loading import ImageDecodeError, LoadFaceImage, decode_face_image
from .synthetic_mask import ApplyFaceMask, RandomFaceMask, draw_mask

__all__ = ['LoadFaceImage', 'PackFaceInputs', 'decode_face_image',
           'ImageDecodeError', 'RandomFaceMask', 'ApplyFaceMask', 'draw_mask',
           'AlignFace', 'estimate_similarity']

"""The five-landmark face alignment template of ArcFace (112x112).

This is the reference every aligned face in the project is defined against:
:class:`~mmfacekd.datasets.transforms.AlignFace` warps detected landmarks
onto it, the synthetic renderer draws faces in its frame, the mask renderer
places masks from it and URFM uses it as the default anchor landmarks.

The values are insightface's ``arcface_dst`` (``insightface/utils/
face_align.py``, originally ``src/common/face_preprocess.py``): the 96x112
template of SphereFace/ArcFace with ``x + 8`` so that it sits in a 112x112
crop (see ``docs/formats.md`` section 6). Order: left eye, right eye,
nose tip, left mouth corner, right mouth corner ("left" = image left), in
(x, y) pixel coordinates of the 112x112 crop.
"""
import numpy as np

__all__ = ['ARCFACE_TEMPLATE_112']

#: The 112x112 ArcFace alignment template (x, y): left eye, right eye, nose
#: tip, left mouth corner, right mouth corner ("left" = image left).
#: Read-only float32 array of shape (5, 2).
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32)
ARCFACE_TEMPLATE_112.setflags(write=False)

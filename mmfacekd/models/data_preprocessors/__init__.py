from .face_data_preprocessor import (
                                     FaceDataPreprocessor,
                                     build_face_data_preprocessor,
)

__all__ = ['FaceDataPreprocessor', 'build_face_data_preprocessor']

from .face_data_preprocessor import FaceDataPreprocessor

__all__ = ['FaceDataPreprocessor']

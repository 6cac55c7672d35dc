from .face_distiller import FaceDistiller, load_teacher_weights
from .recorder import ModuleOutputRecorder, build_recorders

__all__ = ['FaceDistiller', 'load_teacher_weights', 'ModuleOutputRecorder',
           'build_recorders']

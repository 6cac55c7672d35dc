from .face_distiller import (
                             FaceDistiller,
                             load_state_dict_strict,
                             load_teacher_weights,
                             revise_state_dict,
)
from .recorder import ModuleOutputRecorder, RecorderManager, build_recorders

__all__ = ['FaceDistiller', 'load_teacher_weights', 'load_state_dict_strict',
           'revise_state_dict', 'ModuleOutputRecorder', 'RecorderManager',
           'build_recorders']

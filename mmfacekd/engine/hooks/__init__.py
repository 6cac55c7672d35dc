from .corrupt_record_hook import CorruptRecordHook
from .distill_warmup_hook import DistillWarmupHook
from .nonfinite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .progress_bar_hook import EmbeddingProgressHook
from .rng_state_hook import RNGStateHook
from .safe_checkpoint_hook import SafeCheckpointHook
from .sharded_head_checkpoint_hook import ShardedHeadCheckpointHook
from .teacher_eval_hook import TeacherEvalHook

__all__ = ['CorruptRecordHook', 'DistillWarmupHook', 'EmbeddingProgressHook',
           'NonFiniteLossError', 'NonFiniteLossHook',
           'RNGStateHook', 'SafeCheckpointHook', 'ShardedHeadCheckpointHook',
           'TeacherEvalHook']

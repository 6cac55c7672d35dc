from .distill_warmup_hook import DistillWarmupHook
from .progress_bar_hook import EmbeddingProgressHook

__all__ = ['DistillWarmupHook', 'EmbeddingProgressHook']

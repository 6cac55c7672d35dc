from .distill_warmup_hook import DistillWarmupHook

__all__ = ['DistillWarmupHook']

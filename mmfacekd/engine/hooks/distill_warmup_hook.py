"""Ramp the distillation terms in over the first epochs."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmfacekd.registry import HOOKS


@HOOKS.register_module()
class DistillWarmupHook(Hook):
    """Scale every distillation loss by ``min(epoch / warmup_epochs, 1)``.

    This is the KD ramp of the GKD authors' public code (no KD in epoch 0,
    full weight from epoch ``warmup_epochs`` on). With ``by_epoch=False`` the
    ramp is ``min(iter / warmup_iters, 1)`` per iteration instead.

    Args:
        warmup_epochs (int): Epochs (or iterations) of the ramp.
            Defaults to 10.
        by_epoch (bool): Ramp per epoch (authors) or per iteration.
            Defaults to True.
    """
    priority = 'NORMAL'

    def __init__(self, warmup_epochs: int = 10, by_epoch: bool = True) -> None:
        self.warmup = warmup_epochs
        self.by_epoch = by_epoch

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        step = runner.epoch if self.by_epoch else runner.iter
        model.distill_weight_scale = min(step / self.warmup, 1.0) \
            if self.warmup > 0 else 1.0

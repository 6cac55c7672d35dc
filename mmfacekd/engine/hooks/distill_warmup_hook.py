"""Ramp the distillation terms in over the first epochs."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmfacekd.registry import HOOKS


@HOOKS.register_module()
class DistillWarmupHook(Hook):
    """Scale every distillation loss by
    ``min((epoch + count_from) / warmup_epochs, 1)`` (``epoch`` 0-based).

    ``count_from=0`` is the KD ramp of the GKD authors' public code (no KD in
    epoch 0, full weight from epoch ``warmup_epochs`` on); ``count_from=1``
    the DKD authors' ramp (epochs counted from 1: the first epoch has weight
    ``1 / warmup_epochs``, full weight from the ``warmup_epochs``-th epoch
    on). With ``by_epoch=False`` the ramp is
    ``min((iter + count_from) / warmup_iters, 1)`` per iteration instead.

    Args:
        warmup_epochs (int): Epochs (or iterations) of the ramp.
            Defaults to 10.
        by_epoch (bool): Ramp per epoch (authors) or per iteration.
            Defaults to True.
        count_from (int): Number of the first epoch (iteration): 0 or 1.
            Defaults to 0.
    """
    priority = 'NORMAL'

    def __init__(self, warmup_epochs: int = 10, by_epoch: bool = True,
                 count_from: int = 0) -> None:
        if count_from not in (0, 1):
            raise ValueError('DistillWarmupHook: count_from must be 0 or 1, '
                             f'got {count_from!r}')
        self.warmup = warmup_epochs
        self.by_epoch = by_epoch
        self.count_from = count_from

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        step = (runner.epoch if self.by_epoch else runner.iter) \
            + self.count_from
        model.distill_weight_scale = min(step / self.warmup, 1.0) \
            if self.warmup > 0 else 1.0

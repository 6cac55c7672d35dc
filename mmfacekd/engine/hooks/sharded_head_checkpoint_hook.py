"""Full class-sharded heads in checkpoints (PartialFCHead, issue 12)."""
from typing import Optional

from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper
from torch.optim import Optimizer

from mmfacekd.models.heads.shard_checkpoint import (
    check_sharded_checkpoint,
    gather_sharded_state,
    load_sampling_states,
    shard_optimizer_state,
    write_full_state,
    write_sampling_states,
)
from mmfacekd.registry import HOOKS

__all__ = ['ShardedHeadCheckpointHook']


def _saves_after_iter(hook, runner) -> bool:
    """Whether ``hook`` is an iteration-based ``CheckpointHook`` that saves
    in this ``after_train_iter`` (MMEngine 0.10's rule)."""
    if not isinstance(hook, CheckpointHook) or hook.by_epoch:
        return False
    return bool(hook.every_n_train_iters(runner, hook.interval,
                                         hook.save_begin)
                or (hook.save_last and hook.is_last_train_iter(runner)))


@HOOKS.register_module()
class ShardedHeadCheckpointHook(Hook):
    """Save the full ``(C, D)`` weight and momentum of every
    :class:`~mmfacekd.models.heads.PartialFCHead` instead of rank 0's
    shard, and reshard them on load, so that a run resumes on another
    number of ranks (see :mod:`mmfacekd.models.heads.shard_checkpoint`).

    ``Runner.save_checkpoint`` runs on rank 0 only, so the shards are
    gathered on rank 0 (a collective on every rank) just before
    ``CheckpointHook`` saves (priority above it): at the end of every
    training epoch and validation, and after the training iterations at
    which an iteration-based ``CheckpointHook(by_epoch=False)`` saves (its
    ``interval`` / ``save_begin`` / ``save_last`` rule, read from the
    hook). Every checkpoint also holds the negative-sampling state
    ``(seed, step)`` of the sampling heads (``partial_fc_sampling``),
    restored on resume, so a resumed run draws the same negatives. On load,
    a head that is a shard or of another class count is refused first,
    naming the file, key and fix. A model without a sharded head costs
    nothing.
    """

    priority = 'LOW'  # before CheckpointHook ('VERY_LOW')

    def __init__(self) -> None:
        self._gathered: Optional[dict] = None

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    @staticmethod
    def _optimizer(runner):
        # Before ``runner.train()`` builds it (e.g. ``tools/test.py``),
        # ``runner.optim_wrapper`` is still the config dict: no optimizer.
        wrapper = getattr(runner, 'optim_wrapper', None)
        optimizer = getattr(wrapper, 'optimizer', None)
        return optimizer if isinstance(optimizer, Optimizer) else None

    def _gather(self, runner) -> None:
        self._gathered = gather_sharded_state(
            self._model(runner), self._optimizer(runner)) or None

    def after_train_epoch(self, runner) -> None:
        self._gather(runner)

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self._optimizer(runner) is not None:  # a training run
            self._gather(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if any(_saves_after_iter(hook, runner) for hook in runner.hooks):
            self._gather(runner)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self._gathered = None  # never save a stale copy

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._gathered:
            write_full_state(checkpoint, self._gathered)
        write_sampling_states(checkpoint, self._model(runner))

    @staticmethod
    def _source(runner) -> str:
        path = getattr(runner, '_load_from', None)
        return f'checkpoint {path}' if path else \
            'the resumed checkpoint (latest in the work_dir)'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = self._model(runner)
        check_sharded_checkpoint(checkpoint, model, self._source(runner))
        optimizer = self._optimizer(runner)
        if optimizer is not None and 'optimizer' in checkpoint:
            shard_optimizer_state(checkpoint, model, optimizer)
        if getattr(runner, '_resume', False):  # load_from: a new run
            for note in load_sampling_states(checkpoint, model):
                MMLogger.get_current_instance().warning(
                    f'PartialFCHead sampling: {note}')

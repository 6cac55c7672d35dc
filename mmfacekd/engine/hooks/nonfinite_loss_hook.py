"""Stop a run at the first non-finite loss term, before it is checkpointed."""
import math
from typing import Dict, Optional

from mmengine.hooks import Hook

from mmfacekd.registry import HOOKS


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise at the first iteration whose loss terms are not all finite.

    Checks every ``loss*`` term of the iteration's outputs (the
    ``log_vars`` of ``train_step``: ``loss``, ``student.loss_cls``,
    ``distill.loss_gkd``, …). The error names the iteration, the
    non-finite terms and each term's last finite value. It runs before
    :class:`CheckpointHook` (priority ``VERY_HIGH``), so the state after the
    bad step is never saved: the last checkpoint on disk is from before it
    and ``--resume`` continues from there (e.g. with a lower lr).

    (Like mmdet's ``CheckInvalidLossHook``, per term and every iteration.)
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self.last_finite: Dict[str, float] = {}

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if not outputs:
            return
        bad = {}
        for key, value in outputs.items():
            if 'loss' not in key.split('.')[-1]:
                continue
            v = float(value.detach() if hasattr(value, 'detach') else value)
            if math.isfinite(v):
                self.last_finite[key] = v
            else:
                bad[key] = v
        if bad:
            last = {k: self.last_finite.get(k) for k in bad}
            raise NonFiniteLossError(
                f'Iteration {runner.iter + 1} (epoch {runner.epoch + 1}): '
                f'non-finite loss {bad}; last finite values {last}. Nothing '
                'after the previous checkpoint was saved; lower the learning '
                'rate / check the inputs and continue with --resume.')

"""Stop a run at a non-finite loss term, or skip up to K such steps."""
import json
import math
import os.path as osp
from typing import Dict, List, Optional

import torch
from mmengine import dist
from mmengine.hooks import Hook

from mmfacekd.registry import HOOKS


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite."""


class _SkipNonFiniteUpdate:
    """``optim_wrapper.update_params`` that skips non-finite losses.

    The decision is all-reduced (max of a 0/1 flag) *before* backward, so
    under DDP every rank skips the same step together: no rank waits in a
    gradient all-reduce that the others never join, and the replicas stay
    identical. A skipped step runs no backward, no optimizer step and no
    ``zero_grad`` (there are no fresh gradients to clear); parameters,
    optimizer state and the gradient-accumulation counter are untouched.
    """

    def __init__(self, update_params) -> None:
        self.update_params = update_params
        self.skipped = False

    def __call__(self, loss: torch.Tensor, *args, **kwargs) -> None:
        flag = (~torch.isfinite(loss.detach())).any().float().reshape(1)
        if dist.get_world_size() > 1:
            dist.all_reduce(flag, op='max')
        self.skipped = bool(flag.item())
        if not self.skipped:
            self.update_params(loss, *args, **kwargs)


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop at the first non-finite loss term, or skip up to ``max_skips``.

    Checks every ``loss*`` term of the iteration's outputs (the ``log_vars``
    of ``train_step``: ``loss``, ``student.loss_cls``, ``distill.loss_gkd``,
    …) on every rank; the decision is all-reduced, so all ranks stop
    together (no rank is left waiting in a collective) and the error names
    each rank's non-finite terms.

    * ``max_skips=0`` (default): raise :class:`NonFiniteLossError` naming
      the iteration, the non-finite terms and each term's last finite
      value. The hook runs before :class:`CheckpointHook` (priority
      ``VERY_HIGH``), so the state after the bad step is never saved: the
      last checkpoint on disk is from before it and ``--resume`` continues
      from there (e.g. with a lower lr).
    * ``max_skips=K > 0``: the optimizer wrapper's ``update_params`` is
      guarded (see :class:`_SkipNonFiniteUpdate`): a step whose loss is
      non-finite on any rank is not applied, on every rank. Each skip is
      logged (iteration, terms per rank, last finite values) and appended
      to ``<work_dir>/nonfinite_steps.json``; the count lives in the message
      hub, so it is checkpointed and survives ``--resume``. Skip number
      K + 1 raises as above (that step is not applied either).

    (Like mmdet's ``CheckInvalidLossHook``, per term and every iteration;
    the skip mode is what fp16 loss scaling does for overflowing gradients,
    here for the loss itself and in any precision.)

    Args:
        max_skips (int): Non-finite steps to skip before stopping.
            Defaults to 0 (stop at the first).
    """

    priority = 'VERY_HIGH'
    COUNT_KEY = 'nonfinite_loss_skips'

    def __init__(self, max_skips: int = 0) -> None:
        if int(max_skips) != max_skips or max_skips < 0:
            raise ValueError(f'NonFiniteLossHook: max_skips={max_skips!r}; '
                             'use an integer >= 0 (0 = stop at the first '
                             'non-finite loss).')
        self.max_skips = int(max_skips)
        self.last_finite: Dict[str, float] = {}
        self._guard: Optional[_SkipNonFiniteUpdate] = None

    def before_train(self, runner) -> None:
        if self.max_skips == 0:
            return
        wrapper = runner.optim_wrapper
        if not hasattr(wrapper, 'update_params') or hasattr(
                wrapper, 'optim_wrappers'):
            raise TypeError(
                'NonFiniteLossHook(max_skips>0) guards a single '
                f'OptimWrapper; got {type(wrapper).__name__}. Use '
                'max_skips=0 (stop) with several optimizers.')
        if not isinstance(wrapper.update_params, _SkipNonFiniteUpdate):
            wrapper.update_params = _SkipNonFiniteUpdate(
                wrapper.update_params)
        self._guard = wrapper.update_params

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        bad = self._check(outputs or {})
        if self._guard is not None:
            stop = self._guard.skipped
        else:
            flag = torch.tensor([float(bool(bad))])
            if dist.get_world_size() > 1:
                dist.all_reduce(flag, op='max')
            stop = bool(flag.item())
        if not stop:
            return
        per_rank = self._gather(bad)
        where = (f'Iteration {runner.iter + 1} (epoch {runner.epoch + 1}): '
                 f'non-finite loss {self._describe(per_rank)}; last finite '
                 f'values {self._last(per_rank)}.')
        if self._guard is None:
            raise NonFiniteLossError(
                f'{where} Nothing after the previous checkpoint was saved; '
                'lower the learning rate / check the inputs and continue '
                'with --resume.')
        count = runner.message_hub.get_info(self.COUNT_KEY, 0) + 1
        runner.message_hub.update_info(self.COUNT_KEY, count)
        if dist.is_main_process():
            self._record(runner, per_rank)
        if count > self.max_skips:
            raise NonFiniteLossError(
                f'{where} This is non-finite step {count}, more than '
                f'max_skips={self.max_skips} (all skipped, listed in '
                f'{osp.join(runner.work_dir, "nonfinite_steps.json")}). '
                'Nothing after the previous checkpoint was saved; lower '
                'the learning rate / check the inputs and continue with '
                '--resume.')
        runner.logger.warning(f'{where} Step skipped on every rank '
                              f'({count}/{self.max_skips}).')

    def _check(self, outputs: dict) -> Dict[str, float]:
        bad = {}
        for key, value in outputs.items():
            if 'loss' not in key.split('.')[-1]:
                continue
            v = float(value.detach() if hasattr(value, 'detach') else value)
            if math.isfinite(v):
                self.last_finite[key] = v
            else:
                bad[key] = v
        return bad

    def _gather(self, bad: Dict[str, float]) -> List[dict]:
        """``[{'terms': …, 'last': …}]`` of every rank (a collective)."""
        mine = dict(terms=bad,
                    last={k: self.last_finite.get(k) for k in bad})
        if dist.get_world_size() == 1:
            return [mine]
        return dist.all_gather_object(mine)

    @staticmethod
    def _describe(per_rank: List[dict]) -> str:
        if len(per_rank) == 1:
            return str(per_rank[0]['terms'])
        return ', '.join(f'rank {r}: {d["terms"]}'
                         for r, d in enumerate(per_rank) if d['terms'])

    @staticmethod
    def _last(per_rank: List[dict]) -> str:
        if len(per_rank) == 1:
            return str(per_rank[0]['last'])
        return ', '.join(f'rank {r}: {d["last"]}'
                         for r, d in enumerate(per_rank) if d['terms'])

    @staticmethod
    def _record(runner, per_rank: List[dict]) -> None:
        path = osp.join(runner.work_dir, 'nonfinite_steps.json')
        steps = []
        if osp.isfile(path):
            with open(path) as f:
                steps = json.load(f)
        steps.append(dict(
            iter=runner.iter + 1, epoch=runner.epoch + 1,
            ranks={str(r): {k: str(v) for k, v in d['terms'].items()}
                   for r, d in enumerate(per_rank) if d['terms']}))
        with open(path, 'w') as f:
            json.dump(steps, f, indent=1)

"""Evaluate a distiller's teacher alongside the student, once."""
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmfacekd.registry import HOOKS


@HOOKS.register_module()
class TeacherEvalHook(Hook):
    """Add the teacher's embeddings to the first validation of a distiller.

    Before the validation (or test) epoch it sets
    :attr:`FaceDistiller.predict_teacher`, so that ``predict`` also writes
    ``teacher_embedding``/``teacher_xnorm`` into each data sample, and clears
    it after the epoch. The metrics then report ``teacher/<set>/accuracy``
    next to the student's ``<set>/accuracy`` — the frozen teacher's score
    does not change, so by default only the first validation of the run
    pays for the extra teacher forward passes.

    Config::

        custom_hooks = [dict(type='TeacherEvalHook')]

    Args:
        modes (Sequence[str]): Loops in which the teacher is evaluated,
            among ``'val'`` and ``'test'``. Defaults to ``('val',)``.
        once (bool): Evaluate the teacher only in the first epoch of each
            mode in this run (a resumed run evaluates it again once).
            Defaults to True.
    """

    priority = 'NORMAL'

    def __init__(self, modes: Sequence[str] = ('val', ),
                 once: bool = True) -> None:
        bad = set(modes) - {'val', 'test'}
        if bad:
            raise ValueError(f'TeacherEvalHook modes must be val/test, got '
                             f'{sorted(bad)}')
        self.modes = tuple(modes)
        self.once = once
        self._done = set()

    @staticmethod
    def _model(runner):
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        if not hasattr(model, 'predict_teacher'):
            raise TypeError(
                'TeacherEvalHook needs a model with a teacher '
                f'(FaceDistiller); got {type(model).__name__}. Remove the '
                'hook from custom_hooks.')
        return model

    def before_run(self, runner) -> None:
        self._model(runner)

    def _start(self, runner, mode: str) -> None:
        if mode in self.modes and not (self.once and mode in self._done):
            self._model(runner).predict_teacher = True

    def _end(self, runner, mode: str) -> None:
        model = self._model(runner)
        if model.predict_teacher:
            self._done.add(mode)
        model.predict_teacher = False

    def before_val_epoch(self, runner) -> None:
        self._start(runner, 'val')

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self._end(runner, 'val')

    def before_test_epoch(self, runner) -> None:
        self._start(runner, 'test')

    def after_test_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self._end(runner, 'test')

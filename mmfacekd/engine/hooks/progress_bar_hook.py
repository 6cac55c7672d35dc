"""A progress bar over the images of a test/val run (rank 0 only)."""
from typing import Optional, Sequence

from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.utils import ProgressBar

from mmfacekd.registry import HOOKS


@HOOKS.register_module()
class EmbeddingProgressHook(Hook):
    """Show how many images have been embedded in ``test``/``val``.

    Embedding IJB-C (469,375 images) or a million distractors takes long;
    MMEngine's logger prints one line every ``interval`` iterations only.
    This hook draws :class:`mmengine.utils.ProgressBar` on rank 0, counting
    ``batch size × world size`` images per iteration (an estimate for the
    last, shorter batches of other ranks).

    Args:
        modes (Sequence[str]): Loops to show a bar for.
            Defaults to ``('test',)``.
    """
    priority = 'VERY_LOW'

    def __init__(self, modes: Sequence[str] = ('test', )) -> None:
        self.modes = tuple(modes)
        self._bar: Optional[ProgressBar] = None

    def _start(self, runner, mode: str) -> None:
        if mode in self.modes and is_main_process():
            loader = getattr(runner, f'{mode}_dataloader')
            self._bar = ProgressBar(len(loader.dataset))

    def _step(self, data_batch) -> None:
        if self._bar is not None:
            n = len(data_batch['inputs']) if isinstance(data_batch, dict) \
                else len(data_batch)
            n = min(n * get_world_size(),
                    self._bar.task_num - self._bar.completed)
            self._bar.update(n)

    def _end(self) -> None:
        if self._bar is not None:
            self._bar.file.write('\n')
            self._bar = None

    def before_test_epoch(self, runner) -> None:
        self._start(runner, 'test')

    def before_val_epoch(self, runner) -> None:
        self._start(runner, 'val')

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None) -> None:
        self._step(data_batch)

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None) -> None:
        self._step(data_batch)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._end()

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._end()

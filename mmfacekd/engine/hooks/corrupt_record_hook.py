"""Account for every training record skipped as corrupt."""
import json
import os.path as osp
from typing import List

from mmengine.dist import all_gather_object, is_main_process
from mmengine.hooks import Hook

from mmfacekd.registry import HOOKS


@HOOKS.register_module()
class CorruptRecordHook(Hook):
    """Log, save and bound the records a dataset skipped as corrupt.

    A dataset with ``on_corrupt='skip'`` (:class:`MXRecordDataset`) attaches
    ``skipped_records`` to the sample that replaced a corrupt one. This hook
    collects them from every batch (any DataLoader worker), and at the end
    of each epoch gathers them over the ranks, logs every skipped file/key,
    writes the cumulative list to ``<work_dir>/corrupt_records.json`` and
    raises when skipped / (skipped + used) of the epoch exceeds
    ``max_fraction``. With ``on_corrupt='raise'`` nothing is ever skipped
    and the hook is idle.

    Args:
        max_fraction (float): Largest tolerated fraction of corrupt records
            per epoch. Defaults to 0.001.
    """

    priority = 'LOW'

    def __init__(self, max_fraction: float = 0.001) -> None:
        self.max_fraction = max_fraction
        self._epoch: List[dict] = []
        self._used = 0
        self.all_skipped: List[dict] = []

    def before_train_epoch(self, runner) -> None:
        self._epoch, self._used = [], 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        samples = (data_batch or {}).get('data_samples', []) \
            if isinstance(data_batch, dict) else []
        self._used += len(samples)
        for ds in samples:
            self._epoch.extend(ds.metainfo.get('skipped_records', []))

    def after_train_epoch(self, runner) -> None:
        skipped = [r for part in all_gather_object(self._epoch)
                   for r in part]
        used = sum(all_gather_object(self._used))
        if not skipped:
            return
        self.all_skipped.extend(dict(r, epoch=runner.epoch + 1)
                                for r in skipped)
        fraction = len(skipped) / max(1, used + len(skipped))
        keys = ', '.join(f"{osp.basename(r['file'])}:{r['key']}"
                         for r in skipped)
        runner.logger.warning(
            f'epoch {runner.epoch + 1}: skipped {len(skipped)} corrupt '
            f'records ({fraction:.4%} of the epoch): {keys}')
        if is_main_process():
            with open(osp.join(runner.work_dir, 'corrupt_records.json'),
                      'w') as f:
                json.dump(self.all_skipped, f, indent=1)
        if fraction > self.max_fraction:
            raise RuntimeError(
                f'{len(skipped)} of {used + len(skipped)} training records '
                f'of epoch {runner.epoch + 1} were corrupt ({fraction:.4%} > '
                f'max_fraction={self.max_fraction}); they are listed in '
                f'{osp.join(runner.work_dir, "corrupt_records.json")}. Repair '
                'or rebuild the set, or raise '
                'default_hooks.corrupt_records.max_fraction.')

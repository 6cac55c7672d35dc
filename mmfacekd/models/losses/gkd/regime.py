"""Detects the degenerate GKD regime (mean k <= 2) during training."""
import logging
from typing import Optional

import torch
from mmengine.logging import print_log
from torch import Tensor


class RegimeWatch:
    """Warns once when the batch-mean k stays <= 2 for ``window``
    consecutive training calls (the degenerate regime of ``docs/papers.md``
    §1 "Which temperature?": Primary-KD is then a KL over one class).

    The run length is kept on the logits' device and read back once every
    ``window`` calls, so the check costs one host sync per ``window``
    iterations (the warning may come up to ``window - 1`` calls late).
    """

    def __init__(self, window: int):
        self.window = window
        self.calls = 0
        self.run: Optional[Tensor] = None  # consecutive degenerate calls
        self.hit: Optional[Tensor] = None  # run has reached ``window``
        self.warned = False

    def update(self, k_mean: Tensor, temperature: float) -> None:
        if self.window <= 0 or self.warned:
            return
        low = (k_mean.detach() <= 2).long()
        if self.run is None or self.run.device != low.device:
            self.run = torch.zeros_like(low)
            self.hit = torch.zeros_like(low, dtype=torch.bool)
        self.run = (self.run + 1) * low
        self.hit = self.hit | (self.run >= self.window)
        self.calls += 1
        if self.calls % self.window or not bool(self.hit):
            return
        self.warned = True
        print_log(
            f'GKDLoss: the mean primary-group size k has been <= 2 for '
            f'{self.window} consecutive training iterations at '
            f'temperature={temperature:g}: Primary-KD is a KL over ~one '
            'class and only Binary-KD trains. Raise the temperature, e.g. '
            'set model.distill_losses.<name>.temperature=4; see '
            'docs/papers.md §1 "Which temperature?".',
            logger='current',
            level=logging.WARNING)

"""Fault injection for the non-finite-loss tests: a real ArcFaceHead whose
loss becomes NaN at chosen calls (= training iterations) on chosen ranks.

Imported by configs through ``custom_imports`` (the 2-process test runs
``tools/dist_train.sh`` with ``tests/test_engine`` on ``PYTHONPATH``)."""
from typing import Sequence

import torch
from mmengine import dist

from mmfacekd.models.heads import ArcFaceHead
from mmfacekd.registry import MODELS


@MODELS.register_module(force=True)
class NaNInjectingHead(ArcFaceHead):
    """``ArcFaceHead`` with ``loss_cls = NaN`` at 1-based calls ``nan_calls``
    on ranks ``nan_ranks``."""

    def __init__(self, nan_calls: Sequence[int] = (),
                 nan_ranks: Sequence[int] = (0, ), **kwargs) -> None:
        super().__init__(**kwargs)
        self.nan_calls, self.nan_ranks = set(nan_calls), set(nan_ranks)
        self.calls = 0

    def loss_by_logits(self, *args, **kwargs):
        losses = super().loss_by_logits(*args, **kwargs)
        self.calls += 1
        if self.calls in self.nan_calls and \
                dist.get_rank() in self.nan_ranks:
            losses['loss_cls'] = losses['loss_cls'] * torch.tensor(
                float('nan'))
        return losses

"""Fixtures shared by the loss tests.

This folder is a package (``__init__.py``) so that this conftest does not
shadow the top-level ``conftest`` module that other tests import from.
"""
from typing import Any, Callable, Dict, List

import pytest
import torch
from spawn_utils import run_on_gloo

#: tiny backbones of the distiller tests: 16-d embeddings of 32x32 faces
TINY_BACKBONES = dict(
    r18=dict(type='IResNet', depth=18, base_channels=8, input_size=32,
             num_features=16),
    mbf=dict(type='MobileFaceNet', input_size=32, num_features=16,
             blocks=(1, 1, 1, 1), scale=1, expansion=(16, 32, 64),
             conv_sep_channels=32))


@pytest.fixture(scope='session')
def tiny_recognizer() -> Callable[..., Dict[str, Any]]:
    """``build(kind, num_classes=4)``: config of a tiny FaceRecognizer with
    an ArcFace head, ``kind`` ``'r18'`` (IResNet) or ``'mbf'``
    (MobileFaceNet)."""

    def build(kind: str, num_classes: int = 4) -> Dict[str, Any]:
        return dict(type='FaceRecognizer',
                    backbone=dict(TINY_BACKBONES[kind]),
                    head=dict(type='ArcFaceHead', num_classes=num_classes,
                              in_channels=16, s=16.0, m=0.2))

    return build


@pytest.fixture(scope='session')
def tiny_distiller(tiny_recognizer) -> Callable[..., Any]:
    """``build(**kw)``: a FaceDistiller (tiny MobileFaceNet student, tiny
    random IResNet teacher, ``torch.manual_seed(0)``) in training mode, with
    ``kw`` (losses, recorders, ...) added to its config."""

    def build(**kw):
        from mmfacekd.registry import MODELS
        torch.manual_seed(0)
        return MODELS.build(dict(
            type='FaceDistiller', student=tiny_recognizer('mbf'),
            teacher=tiny_recognizer('r18'), teacher_ckpt=None,
            **kw)).train()

    return build


@pytest.fixture(scope='session')
def trainable_optimizer() -> Callable[..., Any]:
    """``build(model)``: ``(optim_wrapper, ids)`` — SGD built by the
    project's TrainableParamsOptimWrapperConstructor and the ``id`` s of the
    parameters it holds."""

    def build(model):
        from mmengine.optim import build_optim_wrapper
        wrapper = build_optim_wrapper(model, dict(
            type='OptimWrapper',
            constructor='TrainableParamsOptimWrapperConstructor',
            optimizer=dict(type='SGD', lr=0.1)))
        return wrapper, {id(p) for g in wrapper.optimizer.param_groups
                         for p in g['params']}

    return build


@pytest.fixture
def run_gloo(tmp_path) -> Callable[..., List[Any]]:
    """``run(fn, world=2)``: call ``fn(rank, world)`` in ``world`` CPU
    processes of one gloo process group and return what each rank returned
    (rank order). ``fn`` must be a module-level function (it is pickled)
    and return tensors or containers of them."""

    def run(fn: Callable, world: int = 2) -> List[Any]:
        return run_on_gloo(fn, world, tmp_path)

    return run

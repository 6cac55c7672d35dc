"""Gradient clipping by global norm with a class-sharded head: on 2 gloo
ranks every rank scales by the norm of the whole model (the full head
included), so the replicated weights stay equal across ranks and every
gradient equals single-process ``clip_grad_norm_`` on the full model."""
import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from spawn_utils import run_on_gloo

from mmfacekd.engine.optimizers import (
    TrainableParamsOptimWrapperConstructor,
    clip_grad_norm_sharded,
)
from mmfacekd.models.heads import PartialFCHead
from mmfacekd.models.utils.class_shard import class_shard

C, D, MAX_NORM = 7, 4, 0.5


class Net(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(3, D)
        self.head = PartialFCHead(C, D)


def _grads():
    """Gradients of the replicated backbone and of the full (C, D) head."""
    gen = torch.Generator().manual_seed(0)
    return dict(weight=torch.randn(D, 3, generator=gen),
                bias=torch.randn(D, generator=gen),
                head=torch.randn(C, D, generator=gen) * 3)


def _clip_step(rank, world, norm_type):
    net = Net()
    wrapper = build_optim_wrapper(net, dict(
        type='OptimWrapper',
        constructor=TrainableParamsOptimWrapperConstructor,
        optimizer=dict(type='SGD', lr=1.0),
        clip_grad=dict(max_norm=MAX_NORM, norm_type=norm_type)))
    assert wrapper.clip_func is clip_grad_norm_sharded
    g = _grads()
    rows = class_shard(C, world, rank)
    net.backbone.weight.grad = g['weight'].clone()
    net.backbone.bias.grad = g['bias'].clone()
    net.head.weight.grad = g['head'][rows.start:rows.stop].clone()
    before = [p.detach().clone() for p in net.parameters()]
    wrapper.step()  # clips, then SGD with lr 1: the step is the grad
    return [b - p.detach() for b, p in zip(before, net.parameters())]


def _reference(norm_type):
    g = _grads()
    params = [nn.Parameter(torch.zeros_like(x)) for x in g.values()]
    for p, x in zip(params, g.values()):
        p.grad = x.clone()
    total = torch.nn.utils.clip_grad_norm_(params, MAX_NORM, norm_type)
    assert total > MAX_NORM  # it clips
    return [p.grad for p in params]


@pytest.mark.parametrize('norm_type', [2.0, float('inf')])
def test_one_process_is_clip_grad_norm(norm_type):
    steps = _clip_step(0, 1, norm_type)
    for got, want in zip(steps, _reference(norm_type)):
        torch.testing.assert_close(got, want)


def test_two_ranks_clip_by_the_norm_of_the_whole_model(tmp_path):
    for norm_type in (2.0, float('inf')):
        ranks = run_on_gloo(_clip_step, 2, tmp_path, (norm_type, ))
        ref = _reference(norm_type)
        for r in ranks:  # replicated: the same step on both ranks
            torch.testing.assert_close(r[0], ref[0])
            torch.testing.assert_close(r[1], ref[1])
        head = torch.cat([r[2] for r in ranks])
        torch.testing.assert_close(head, ref[2])
    # each rank's own norm would scale differently: the test can tell
    g = _grads()
    own = [torch.cat([g['weight'].flatten(), g['bias'],
                      g['head'][s.start:s.stop].flatten()]).norm()
           for s in (class_shard(C, 2, r) for r in (0, 1))]
    assert abs(float(own[0] - own[1])) > 0.1

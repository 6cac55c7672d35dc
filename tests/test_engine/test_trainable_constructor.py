"""TrainableParamsOptimWrapperConstructor: frozen parameters never reach the
optimizer; paramwise_cfg still applies to the rest."""
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper

from mmfacekd.engine.optimizers import TrainableParamsOptimWrapperConstructor
from mmfacekd.registry import OPTIM_WRAPPER_CONSTRUCTORS


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(3, 3)  # e.g. a distiller's teacher
        self.trained = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)
        self.frozen.requires_grad_(False)


def _ids(params):
    return {id(p) for p in params}


def _build(model, **kw):
    return build_optim_wrapper(model, dict(
        type='OptimWrapper',
        constructor='TrainableParamsOptimWrapperConstructor',
        optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-2),
        **kw))


def test_registered():
    assert OPTIM_WRAPPER_CONSTRUCTORS.get(
        'TrainableParamsOptimWrapperConstructor') is \
        TrainableParamsOptimWrapperConstructor


def test_frozen_parameters_are_left_out():
    model = Net()
    wrapper = _build(model)
    groups = wrapper.optimizer.param_groups
    in_opt = _ids(p for g in groups for p in g['params'])
    trainable = _ids(p for p in model.parameters() if p.requires_grad)
    assert in_opt == trainable
    assert not in_opt & _ids(model.frozen.parameters())
    assert all(g['params'] for g in groups)


def test_paramwise_cfg_is_honoured_and_empty_groups_dropped():
    model = Net()
    wrapper = _build(model, paramwise_cfg=dict(bias_decay_mult=0.0,
                                               norm_decay_mult=0.0))
    groups = wrapper.optimizer.param_groups
    # one group per trainable parameter (paramwise), none for frozen ones
    assert len(groups) == 4 and all(len(g['params']) == 1 for g in groups)
    decay = {id(g['params'][0]): g['weight_decay'] for g in groups}
    assert decay[id(model.trained.weight)] == 1e-2
    assert decay[id(model.trained.bias)] == 0.0
    assert decay[id(model.norm.weight)] == 0.0
    assert decay[id(model.norm.bias)] == 0.0


def test_step_moves_only_trainable_parameters():
    torch.manual_seed(0)
    model = Net()
    frozen = [p.clone() for p in model.frozen.parameters()]
    trained = model.trained.weight.clone()
    wrapper = _build(model)
    loss = model.norm(model.trained(model.frozen(torch.randn(4, 3)))).pow(2)
    wrapper.update_params(loss.sum())
    assert all(torch.equal(a, b) for a, b in
               zip(frozen, model.frozen.parameters()))
    assert not torch.equal(trained, model.trained.weight)

"""NonFiniteLossHook: a real divergence (absurd learning rate) stops the
Runner at the first non-finite loss, naming iteration, terms and last
finite values; nothing after the last good checkpoint is saved."""
import os

import pytest
import torch
from mmengine.runner import Runner

from mmfacekd.engine.hooks import NonFiniteLossError

from conftest import TINY_IDS, tiny_config

STUDENT = 'configs/demo/arcface_mbf_synth.py'


def _cfg(tiny_synth, work_dir, **kw):
    cfg = tiny_config(STUDENT, tiny_synth, work_dir, **kw)
    cfg.model.head.num_classes = TINY_IDS
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint.save_best = None
    return cfg


def test_divergence_stops_before_it_is_checkpointed(tiny_synth, tmp_path):
    good = _cfg(tiny_synth, str(tmp_path / 'good'))
    Runner.from_cfg(good).train()
    ckpt = tmp_path / 'good' / 'epoch_1.pth'
    before = ckpt.read_bytes()

    bad = _cfg(tiny_synth, str(tmp_path / 'bad'), epochs=2)
    bad.load_from = str(ckpt)
    bad.optim_wrapper.optimizer.lr = 1e30
    bad.param_scheduler = []
    runner = Runner.from_cfg(bad)
    with pytest.raises(NonFiniteLossError) as err:
        runner.train()
    msg = str(err.value)
    assert f'Iteration {runner.iter + 1}' in msg
    assert "'loss'" in msg and "'loss_cls'" in msg
    assert 'last finite values' in msg and '--resume' in msg
    # the first iteration was finite (its value is reported), the run
    # stopped in epoch 1 of the new work dir: no checkpoint written there
    assert runner.iter >= 1
    assert not [f for f in os.listdir(tmp_path / 'bad') if f.endswith('.pth')]
    assert ckpt.read_bytes() == before
    assert torch.load(ckpt, weights_only=True)['meta']['epoch'] == 1

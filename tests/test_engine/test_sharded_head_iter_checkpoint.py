"""Iteration-based checkpoints (``CheckpointHook(by_epoch=False)``) of a
Partial FC run hold the full head and its momentum: the real MMEngine
Runner on 2 gloo ranks writes ``iter_*.pth`` with the ``(C, D)`` head
(the concatenated shards of the ranks at that iteration), and one process
resumes from it with the same weight and momentum."""
import os

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from spawn_utils import run_on_gloo

from mmfacekd.utils import load_checkpoint_safely

from conftest import TINY_IDS, tiny_model_config

CONFIG = 'configs/demo/gkd_pfc_r18_mbf_synth.py'
HEAD = 'student.head.weight'


def _head_and_momentum(runner):
    model = getattr(runner.model, 'module', runner.model)
    weight = model.student.head.weight
    state = runner.optim_wrapper.optimizer.state[weight]
    return weight.detach().clone(), state['momentum_buffer'].clone()


class _RecordShards(Hook):
    """Keeps this rank's head shard and momentum after every iteration."""

    def __init__(self):
        self.seen = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.seen[runner.iter + 1] = _head_and_momentum(runner)


def _train(rank, world, cfg_path):
    cfg = Config.fromfile(cfg_path)
    cfg.launcher = 'pytorch'  # the gloo group already exists
    os.environ['LOCAL_RANK'] = str(rank)  # read by MMEngine's DDP wrapping
    runner = Runner.from_cfg(cfg)
    record = _RecordShards()
    runner.register_hook(record, priority='VERY_HIGH')
    runner.train()
    del runner  # its DDP reducer goes before the process group
    return record.seen


class _RecordResumed(Hook):

    def before_train(self, runner):
        self.resumed = (runner.iter, ) + _head_and_momentum(runner)


def _config(tiny_synth, work_dir):
    cfg = tiny_model_config(CONFIG, tiny_synth, work_dir)
    cfg.model.teacher_ckpt = None
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', by_epoch=False, interval=2, max_keep_ckpts=-1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    return cfg


def test_iteration_checkpoints_hold_the_full_head(tiny_synth, tmp_path):
    work_dir = str(tmp_path / 'w')
    cfg = _config(tiny_synth, work_dir)
    path = str(tmp_path / 'cfg.py')
    cfg.dump(path)
    seen = run_on_gloo(_train, 2, tmp_path, (path, ), timeout=240)
    last = max(seen[0])
    assert last == 3 and sorted(seen[0]) == sorted(seen[1])
    for step in (2, last):  # the interval rule, then save_last
        ckpt = load_checkpoint_safely(os.path.join(work_dir,
                                                   f'iter_{step}.pth'))
        assert ckpt['meta']['iter'] == step
        weight = ckpt['state_dict'][HEAD]
        assert weight.shape == (TINY_IDS, 128)  # not rank 0's 6 rows
        full = torch.cat([seen[r][step][0] for r in (0, 1)])
        momentum = torch.cat([seen[r][step][1] for r in (0, 1)])
        assert torch.equal(weight, full)
        (index, ) = [i for i, s in ckpt['optimizer']['state'].items()
                     if s['momentum_buffer'].shape == weight.shape]
        assert torch.equal(ckpt['optimizer']['state'][index]
                           ['momentum_buffer'], momentum)
        assert momentum.abs().sum() > 0
        assert ckpt['partial_fc_sampling']['student.head']['step'] == step

    # one process resumes the 2-rank run from iteration 2: all 12 rows
    cfg = _config(tiny_synth, str(tmp_path / 'resumed'))
    cfg.resume, cfg.load_from = True, os.path.join(work_dir, 'iter_2.pth')
    cfg.train_cfg.max_epochs = 1
    record = _RecordResumed()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(record, priority='VERY_HIGH')
    runner.train()
    step, weight, momentum = record.resumed
    assert step == 2
    assert torch.equal(weight, torch.cat([seen[r][2][0] for r in (0, 1)]))
    assert torch.equal(momentum, torch.cat([seen[r][2][1] for r in (0, 1)]))

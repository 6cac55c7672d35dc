"""NonFiniteLossHook(max_skips=K): a NaN loss (injected by a real
MarginHead subclass at chosen iterations and ranks) is not applied — the
parameters and optimizer state of that step are unchanged, on every rank —
each skip is logged and listed in nonfinite_steps.json, and skip K + 1
stops the run; on 2 gloo processes a NaN on rank 1 only is skipped by both
ranks together and the stop reaches both (no hang)."""
import json
import os
import subprocess
import sys
import time

import nan_injection  # noqa: F401 - registers NaNInjectingHead
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmfacekd.engine.hooks import NonFiniteLossError

from conftest import ROOT, TINY_IDS, tiny_config

STUDENT = 'configs/demo/arcface_mbf_synth.py'


def _cfg(tiny_synth, work_dir, nan_calls, max_skips, nan_ranks=(0, ),
         epochs=1):
    cfg = tiny_config(STUDENT, tiny_synth, work_dir, epochs=epochs)
    cfg.model.head.update(type='NaNInjectingHead', num_classes=TINY_IDS,
                          nan_calls=list(nan_calls),
                          nan_ranks=list(nan_ranks))
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint.save_best = None
    cfg.default_hooks.nonfinite_loss = dict(type='NonFiniteLossHook',
                                            max_skips=max_skips)
    return cfg


class _StepRecorder(Hook):
    """Records, per 1-based iteration, whether the step changed any
    parameter or the optimizer's state."""
    priority = 'LOWEST'

    def __init__(self):
        self.changed, self.before = {}, None

    @staticmethod
    def _state(runner):
        model = runner.model
        params = [p.detach().clone() for p in model.parameters()]
        opt = runner.optim_wrapper.optimizer.state_dict()['state']
        bufs = [v.clone() for s in opt.values() for v in s.values()
                if torch.is_tensor(v)]
        return params + bufs

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.before = self._state(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        after = self._state(runner)
        self.changed[runner.iter + 1] = len(after) != len(self.before) or \
            any(not torch.equal(a, b) for a, b in zip(after, self.before))


def test_skipped_steps_are_not_applied(tiny_synth, tmp_path):
    runner = Runner.from_cfg(_cfg(tiny_synth, str(tmp_path), (3, 5), 2))
    rec = _StepRecorder()
    runner.register_hook(rec)
    runner.train()
    iters = sorted(rec.changed)
    assert len(iters) >= 6
    assert [i for i in iters if not rec.changed[i]] == [3, 5]
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())
    with open(tmp_path / 'nonfinite_steps.json') as f:
        steps = json.load(f)
    assert [s['iter'] for s in steps] == [3, 5]
    assert set(steps[0]['ranks']['0']) == {'loss', 'loss_cls'}
    assert runner.message_hub.get_info('nonfinite_loss_skips') == 2
    ckpt = torch.load(tmp_path / 'epoch_1.pth', weights_only=True)
    assert ckpt['message_hub']['runtime_info']['nonfinite_loss_skips'] == 2


def test_one_skip_too_many_stops_without_applying_it(tiny_synth, tmp_path):
    runner = Runner.from_cfg(_cfg(tiny_synth, str(tmp_path), (2, 4), 1))
    rec = _StepRecorder()
    runner.register_hook(rec)
    with pytest.raises(NonFiniteLossError) as err:
        runner.train()
    msg = str(err.value)
    assert 'Iteration 4 ' in msg and "'loss_cls': nan" in msg
    assert 'non-finite step 2, more than max_skips=1' in msg
    assert 'nonfinite_steps.json' in msg and '--resume' in msg
    assert rec.changed == {1: True, 2: False, 3: True}
    # the 4th step was refused too: the weights are those after step 3
    assert all(torch.equal(p.detach(), b) for p, b in
               zip(runner.model.parameters(), rec.before))


def test_bad_max_skips_is_refused():
    from mmfacekd.engine.hooks import NonFiniteLossHook
    with pytest.raises(ValueError, match='max_skips=-1'):
        NonFiniteLossHook(max_skips=-1)


def test_nan_on_one_of_two_gloo_ranks(tiny_synth, tmp_path):
    cfg = _cfg(tiny_synth, str(tmp_path / 'unused'), (2, 5), 1,
               nan_ranks=(1, ), epochs=3)
    cfg.custom_imports = dict(imports=['nan_injection'],
                              allow_failed_imports=False)
    path = str(tmp_path / 'cfg.py')
    cfg.dump(path)
    work = tmp_path / 'work'
    env = dict(os.environ, PYTHON=sys.executable, PORT='29583',
               PYTHONPATH=os.pathsep.join(
                   [ROOT, os.path.join(ROOT, 'tests', 'test_engine')]))
    start = time.time()
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', path, '2', '--work-dir', str(work)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    took = time.time() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    with open(work / 'nonfinite_steps.json') as f:
        steps = json.load(f)
    assert [s['iter'] for s in steps] == [2, 5]
    assert all(list(s['ranks']) == ['1'] for s in steps)
    assert 'Step skipped on every rank (1/1)' in out
    assert "rank 1: {'loss':" in out and \
        'non-finite step 2, more than max_skips=1' in out
    # both ranks raised (the decision is all-reduced): no rank was left
    # waiting for a collective until the timeout
    assert out.count('NonFiniteLossError: Iteration 5') >= 2, out[-3000:]
    assert took < 240
    ckpt = torch.load(work / 'epoch_1.pth', weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values()
               if v.is_floating_point())

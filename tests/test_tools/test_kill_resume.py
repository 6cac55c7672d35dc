"""Kill/resume equivalence: a run SIGKILLed in the middle of epoch 2 (a real
process kill) and resumed with --resume ends with exactly the weights,
optimizer state, LR schedule position and RNG state of the uninterrupted
run, in deterministic CPU mode, for a recognizer, a GKD distiller, the
P x K sampler (EKD) and a CAKD distiller with a prompted (APT) ViT teacher
whose prompts train; and for a recognizer on 2 gloo processes."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.runner import Runner

from mmfacekd.utils import load_checkpoint_safely

from conftest import ROOT, tiny_model_config

STUDENT = 'configs/demo/arcface_mbf_synth.py'
TEACHER = 'configs/demo/arcface_r18_synth.py'
GKD = 'configs/demo/gkd_r18_mbf_synth.py'
EKD = 'configs/demo/ekd_r18_mbf_synth.py'
CAKD = 'configs/demo/cakd_vit_mbf_synth.py'
VIT_TEACHER = 'configs/demo/arcface_vit_synth.py'


def _train_teacher(config, tiny_synth, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('kill_resume_teacher')
    cfg = tiny_model_config(config, tiny_synth, str(tmp))
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    Runner.from_cfg(cfg).train()
    return str(tmp / 'epoch_1.pth')


@pytest.fixture(scope='module')
def teacher(tiny_synth, tmp_path_factory):
    return _train_teacher(TEACHER, tiny_synth, tmp_path_factory)


@pytest.fixture(scope='module')
def vit_teacher(tiny_synth, tmp_path_factory):
    return _train_teacher(VIT_TEACHER, tiny_synth, tmp_path_factory)


def _config(config, tiny_synth, tmp_path, teacher_ckpt):
    kw = dict(model=dict(teacher_ckpt=teacher_ckpt)) if teacher_ckpt else {}
    cfg = tiny_model_config(config, tiny_synth, str(tmp_path / 'unused'),
                            epochs=3, **kw)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint.save_best = None
    cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    cfg.randomness = dict(seed=7, deterministic=True)
    if config == EKD:  # a P x K batch the tiny set can fill
        cfg.train_dataloader.sampler.update(num_random=4, num_ids=2,
                                            num_per_id=2)
    path = str(tmp_path / 'cfg.py')
    cfg.dump(path)
    return path


def _train(cmd, work_dir, env, kill_in_epoch=None):
    """Run a training command; with ``kill_in_epoch``, SIGKILL it after its
    first logged iteration of that epoch (an epoch of the 2-process run has
    only 4 iterations, which a quiet machine runs in well under a second).
    Returns the return code."""
    os.makedirs(work_dir, exist_ok=True)
    log_path = os.path.join(work_dir, 'stdout.log')
    with open(log_path, 'a') as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            if kill_in_epoch is None:
                return proc.wait(timeout=600)
            mark = f'Epoch(train) [{kill_in_epoch}][1/'
            deadline = time.time() + 600
            while mark not in open(log_path).read():
                assert proc.poll() is None, open(log_path).read()[-3000:]
                assert time.time() < deadline
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


def _assert_same(a_path, b_path):
    a = load_checkpoint_safely(a_path)
    b = load_checkpoint_safely(b_path)
    assert a['meta']['epoch'] == b['meta']['epoch'] == 3
    assert a['meta']['iter'] == b['meta']['iter']
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for k, v in a['state_dict'].items():
        assert torch.equal(v, b['state_dict'][k]), k
    if any('prompts' in k for k in a['state_dict']):  # APT: prompts train
        init = load_checkpoint_safely(
            a_path.replace('epoch_3', 'epoch_1'))['state_dict']
        prompts = [k for k in a['state_dict'] if 'prompts' in k]
        assert any(not torch.equal(a['state_dict'][k], init[k])
                   for k in prompts)
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert sa.keys() == sb.keys()
    for i in sa:
        for k, v in sa[i].items():
            assert torch.equal(v, sb[i][k]), (i, k)
    assert a['optimizer']['param_groups'] == b['optimizer']['param_groups']
    assert a['param_schedulers'] == b['param_schedulers']
    ra, rb = a['rng_state'], b['rng_state']
    assert ra['python'] == rb['python'] and ra['numpy'] == rb['numpy']
    assert torch.equal(ra['torch'], rb['torch'])


@pytest.mark.parametrize('config', [STUDENT, GKD, EKD, CAKD])
def test_sigkill_then_resume_equals_uninterrupted(config, tiny_synth,
                                                  tmp_path, request):
    teacher = None if config == STUDENT else request.getfixturevalue(
        'vit_teacher' if config == CAKD else 'teacher')
    cfg = _config(config, tiny_synth, tmp_path, teacher)
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    train = [sys.executable, 'tools/train.py', cfg, '--work-dir']
    full, killed = str(tmp_path / 'full'), str(tmp_path / 'killed')
    assert _train(train + [full], full, env) == 0
    rc = _train(train + [killed], killed, env, kill_in_epoch=2)
    assert rc == -signal.SIGKILL
    assert not os.path.exists(os.path.join(killed, 'epoch_2.pth'))
    assert _train(train + [killed, '--resume'], killed, env) == 0
    _assert_same(os.path.join(full, 'epoch_3.pth'),
                 os.path.join(killed, 'epoch_3.pth'))


def test_sigkill_then_resume_on_two_gloo_processes(tiny_synth, tmp_path):
    cfg = _config(STUDENT, tiny_synth, tmp_path, None)
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHON=sys.executable,
               PORT='29571')
    train = ['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir']
    full, killed = str(tmp_path / 'full'), str(tmp_path / 'killed')
    assert _train(train + [full], full, env) == 0
    assert _train(train + [killed], killed, env, kill_in_epoch=2) != 0
    assert _train(train + [killed, '--resume'], killed, env) == 0
    _assert_same(os.path.join(full, 'epoch_3.pth'),
                 os.path.join(killed, 'epoch_3.pth'))

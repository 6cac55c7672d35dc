"""Kill/resume equivalence: a run SIGKILLed in the middle of epoch 2 (a real
process kill) and resumed with --resume ends with exactly the weights,
optimizer state, LR schedule position and RNG state of the uninterrupted
run, in deterministic CPU mode, for a recognizer, a GKD distiller, the
P x K sampler (EKD) and a CAKD distiller with a prompted (APT) ViT teacher
whose prompts train; and for a recognizer on 2 gloo processes (the
launcher and both ranks killed: torchrun gives each rank a session of its
own).

The single-process runs are real tools/train.py processes forked from tool
servers that imported torch, MMEngine and mmfacekd once
(tests/tool_server.py); the uninterrupted and the killed run of a config
run side by side."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.runner import Runner
from tool_server import shared_servers

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


def _log(work_dir):
    os.makedirs(work_dir, exist_ok=True)
    return os.path.join(work_dir, 'stdout.log')


def _start(cmd, work_dir, env):
    """Start a training command as a new session, output to
    ``work_dir/stdout.log``."""
    log_path = _log(work_dir)
    with open(log_path, 'a') as log:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)


def _descendants(pid):
    """The pids of all living descendants of ``pid`` (from /proc)."""
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if fields[0] != 'Z':
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def _kill_tree(proc, pids=()):
    """SIGKILL ``proc``'s process group and every process below it.
    torchrun starts each rank in a session of its own, so killing the
    launcher's group alone would leave the ranks training on as orphans."""
    pids = set(pids) | set(_descendants(proc.pid))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it has just exited (and been reaped)
            pass
    return pids


def _kill_in_epoch(proc, log_path, epoch):
    """SIGKILL ``proc`` and all its descendants (the ranks of a 2-process
    run) after the first logged iteration of ``epoch``, and wait until none
    of them is left (an epoch of the 2-process run has only 3 iterations,
    which a quiet machine runs in well under a second: the log is polled
    every 5 ms, and the process tree is known before the mark appears).
    Returns the return code."""
    mark = f'Epoch(train) [{epoch}][1/'
    deadline = time.time() + 600
    text, pids, scanned = '', set(), 0.0
    with open(log_path, errors='replace') as log:
        while True:
            text = text[-3000:] + log.read()
            if mark in text:
                break
            assert proc.poll() is None, text[-3000:]
            assert time.time() < deadline
            if time.time() > scanned + 0.2:
                pids.update(_descendants(proc.pid))
                scanned = time.time()
            time.sleep(0.005)
    pids = _kill_tree(proc, pids)
    rc = proc.wait(timeout=60)
    while any(_alive(pid) for pid in pids):
        assert time.time() < deadline + 60, 'killed processes still alive'
        time.sleep(0.01)
    return rc


def _train(cmd, work_dir, env, kill_in_epoch=None):
    """Run a training command; with ``kill_in_epoch``, SIGKILL it (all its
    processes) after its first logged iteration of that epoch. Returns the
    return code."""
    proc = _start(cmd, work_dir, env)
    try:
        if kill_in_epoch is None:
            return proc.wait(timeout=600)
        return _kill_in_epoch(proc, _log(work_dir), kill_in_epoch)
    finally:
        _kill_tree(proc)


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


@pytest.fixture(scope='module')
def tools():
    """Two tool servers (tests/tool_server.py): every tools/train.py run
    below is a real process forked from one, so it skips a fresh
    interpreter's ~5 s of imports. The uninterrupted run comes from one
    interpreter, the killed and the resumed run from the other, so the runs
    compared do not share a string hash seed (unless PYTHONHASHSEED is
    set, as for fresh interpreters)."""
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    servers = shared_servers(env, ROOT, 2)
    yield servers
    servers[1].close()  # the first one serves other modules too


@pytest.mark.parametrize('config', [STUDENT, GKD, EKD, CAKD])
def test_sigkill_then_resume_equals_uninterrupted(config, tiny_synth,
                                                  tmp_path, request, tools):
    teacher = None if config == STUDENT else request.getfixturevalue(
        'vit_teacher' if config == CAKD else 'teacher')
    cfg = _config(config, tiny_synth, tmp_path, teacher)
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    train = ['tools/train.py', cfg, '--work-dir']
    full, killed = str(tmp_path / 'full'), str(tmp_path / 'killed')
    # the uninterrupted run and the killed + resumed one are independent
    # single-threaded processes: they run side by side on the 2 cores
    procs = [tools[0].popen(train + [full], ROOT, _log(full), env)]
    try:
        procs.append(tools[1].popen(train + [killed], ROOT, _log(killed),
                                    env))
        rc = _kill_in_epoch(procs[-1], _log(killed), 2)
        assert rc == -signal.SIGKILL
        assert not os.path.exists(os.path.join(killed, 'epoch_2.pth'))
        procs.append(tools[1].popen(train + [killed, '--resume'], ROOT,
                                    _log(killed), env))
        assert procs[-1].wait(timeout=600) == 0, \
            open(_log(killed)).read()[-3000:]
        assert procs[0].wait(timeout=600) == 0, \
            open(_log(full)).read()[-3000:]
    finally:
        for proc in procs:
            _kill_tree(proc)
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
    assert not os.path.exists(os.path.join(killed, 'epoch_2.pth'))
    assert _train(train + [killed, '--resume'], killed, env) == 0
    _assert_same(os.path.join(full, 'epoch_3.pth'),
                 os.path.join(killed, 'epoch_3.pth'))

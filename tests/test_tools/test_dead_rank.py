"""A rank killed mid-epoch (SIGKILL, a real process kill) ends the job:
tools/dist_train.sh returns non-zero within a bounded time and names the
dead rank; nothing hangs. 2 and 4 gloo processes."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, tiny_model_config

STUDENT = 'configs/demo/arcface_mbf_synth.py'


def _rank_pids(parent: int, rank: int):
    """PIDs under ``parent`` whose environment says RANK=rank and that run
    tools/train.py (the workers torchrun started)."""
    out = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            env = open(f'/proc/{pid}/environ', 'rb').read().split(b'\0')
            cmd = open(f'/proc/{pid}/cmdline', 'rb').read()
        except OSError:
            continue
        if b'tools/train.py' in cmd and f'RANK={rank}'.encode() in env \
                and 'TORCHELASTIC_RUN_ID'.encode() in b' '.join(env):
            out.append(int(pid))
    return out


@pytest.mark.parametrize('world', [2, 4])
def test_killed_rank_fails_the_job_fast(world, tiny_synth, tmp_path):
    cfg = tiny_model_config(STUDENT, tiny_synth, str(tmp_path / 'w'),
                            epochs=200)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.env_cfg.dist_cfg = dict(backend='nccl', timeout=60)
    cfg.default_hooks.checkpoint.interval = 1000
    path = str(tmp_path / 'cfg.py')
    cfg.dump(path)
    log_path = tmp_path / 'out.log'
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(29560 + world),
               PYTHONPATH=ROOT)
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(
            ['bash', 'tools/dist_train.sh', path, str(world)], cwd=ROOT,
            env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            # wait until training iterates, then kill the last rank
            deadline = time.time() + 240
            victim = []
            while time.time() < deadline:
                text = open(log_path).read()
                if 'Epoch(train)' in text:
                    victim = _rank_pids(proc.pid, world - 1)
                    if victim:
                        break
                assert proc.poll() is None, text[-3000:]
                time.sleep(1)
            assert victim, open(log_path).read()[-3000:]
            killed_at = time.time()
            os.kill(victim[0], signal.SIGKILL)
            rc = proc.wait(timeout=120)
            elapsed = time.time() - killed_at
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    text = open(log_path).read()
    assert rc != 0
    assert elapsed < 120
    print(f'world {world}: exited rc={rc} {elapsed:.1f} s after the kill')
    # torchrun's failure report names the dead rank and its signal
    assert f'rank      : {world - 1}' in text or \
        f'rank: {world - 1}' in text, text[-3000:]
    assert 'SIGKILL' in text or 'exitcode  : -9' in text, text[-3000:]
    # no survivor left behind
    time.sleep(2)
    for r in range(world):
        assert not _rank_pids(proc.pid, r)

"""Atomic checkpoint writes: a write that fails (file-size limit = a full
disk, in a real subprocess) leaves the previous file intact and no torn or
temporary file; the Runner's CheckpointHook writes through it."""
import json
import os
import subprocess
import sys

from mmengine.config import Config

from conftest import ROOT

CHILD = r'''
import json, os, resource, signal, sys
sys.path.insert(0, sys.argv[1])
from mmfacekd.engine.atomic_file_backend import AtomicLocalBackend
folder = sys.argv[2]
path = os.path.join(folder, 'epoch_1.pth')
backend = AtomicLocalBackend()
backend.put(b'good' * 256, path)                     # 1 KiB, fits
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)        # EFBIG, not a kill
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
errors = []
for name in ('epoch_1.pth', 'epoch_2.pth'):           # overwrite / new file
    try:
        backend.put(b'x' * 100000, os.path.join(folder, name))
    except OSError as e:
        errors.append(str(e))
print(json.dumps(dict(errors=errors)))
'''


def test_failed_write_keeps_the_previous_file(tmp_path):
    out = subprocess.run([sys.executable, '-c', CHILD, ROOT, str(tmp_path)],
                         capture_output=True, text=True, check=True)
    errors = json.loads(out.stdout.strip().splitlines()[-1])['errors']
    assert len(errors) == 2
    for e in errors:
        assert 'intact' in e and '--resume' in e and str(tmp_path) in e
    assert (tmp_path / 'epoch_1.pth').read_bytes() == b'good' * 256
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth']


def test_default_runtime_checkpoints_go_through_it():
    cfg = Config.fromfile(os.path.join(
        ROOT, 'configs/_base_/default_runtime.py'))
    assert cfg.default_hooks.checkpoint.backend_args == dict(
        backend='atomic_local')
    from mmengine.fileio import get_file_backend

    from mmfacekd.engine import AtomicLocalBackend
    backend = get_file_backend('work_dirs/x',
                               backend_args=dict(backend='atomic_local'))
    assert isinstance(backend, AtomicLocalBackend)


RUNNER_CHILD = r'''
import os, resource, signal, sys
sys.path.insert(0, sys.argv[1])
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmfacekd.utils import register_all_modules
register_all_modules(init_default_scope=True)


class FillDiskAfterFirstCheckpoint(Hook):
    """After epoch 1's checkpoint (CheckpointHook is VERY_LOW), the disk is
    'full' for anything larger than 1 MiB."""
    priority = 'LOWEST'

    def after_train_epoch(self, runner):
        if runner.epoch == 0:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


runner = Runner.from_cfg(Config.fromfile(sys.argv[2]))
runner.register_hook(FillDiskAfterFirstCheckpoint())
try:
    runner.train()
except OSError as e:
    print('OSERROR', e)
    sys.exit(3)
'''


def test_full_disk_during_training_keeps_the_last_checkpoint(tiny_synth,
                                                             tmp_path):
    """A real Runner: epoch 2's checkpoint hits a full disk -> the run stops
    with the error naming the file; epoch 1's checkpoint is intact."""
    from mmfacekd.utils.checkpoint_safety import load_checkpoint_safely

    from conftest import TINY_IDS, tiny_config
    work = tmp_path / 'work'
    cfg = tiny_config('configs/demo/arcface_mbf_synth.py', tiny_synth,
                      str(work), epochs=2)
    cfg.model.head.num_classes = TINY_IDS
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint.save_best = None
    path = str(tmp_path / 'cfg.py')
    cfg.dump(path)
    out = subprocess.run([sys.executable, '-c', RUNNER_CHILD, ROOT, path],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 3, out.stderr[-3000:]
    msg = out.stdout.split('OSERROR', 1)[1]
    assert str(work / 'epoch_2.pth') in msg and 'intact' in msg
    ckpts = sorted(f for f in os.listdir(work) if '.pth' in f)
    assert ckpts == ['epoch_1.pth']  # no torn epoch_2 / temp file
    ckpt = load_checkpoint_safely(str(work / 'epoch_1.pth'))
    assert ckpt['meta']['epoch'] == 1 and ckpt['state_dict']
    assert 'optimizer' in ckpt  # a complete, resumable checkpoint

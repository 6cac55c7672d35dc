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

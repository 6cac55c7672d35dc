"""job_runner: which work dirs count as finished; where the repo root is."""
import os
import sys
from pathlib import Path

import mmfacekd.utils.job_runner as job_runner
from mmfacekd.utils.job_runner import (
    _final_epoch,
    _is_final,
    last_checkpoint,
    run_logged,
)

REPO = str(Path(__file__).resolve().parents[2])


def test_final_epoch_and_interrupted_runs(tmp_path):
    assert _final_epoch('configs/demo/arcface_vit_synth.py', REPO) == 6
    assert _final_epoch('configs/demo/kd_r18_mbf_synth.py', REPO) == 4
    assert not _is_final('w/epoch_3.pth', 6)
    assert _is_final('w/epoch_6.pth', 6)
    assert _is_final('w/iter_500.pth', 6)  # iteration-based: trust it
    assert last_checkpoint(str(tmp_path)) is None
    ckpt = tmp_path / 'epoch_2.pth'
    ckpt.write_bytes(b'x')
    (tmp_path / 'last_checkpoint').write_text(str(ckpt))
    assert last_checkpoint(str(tmp_path)) == str(ckpt)
    os.remove(ckpt)  # a stale pointer is not a checkpoint
    assert last_checkpoint(str(tmp_path)) is None


def test_root_comes_from_the_caller_not_the_package(tmp_path, monkeypatch):
    # no module-level root derived from mmfacekd.__file__
    assert not hasattr(job_runner, 'ROOT')
    # a relative checkpoint name is relative to the caller's root ...
    root = tmp_path / 'checkout'
    (root / 'w').mkdir(parents=True)
    (root / 'w' / 'epoch_1.pth').write_bytes(b'x')
    (root / 'w' / 'last_checkpoint').write_text('w/epoch_1.pth')
    assert last_checkpoint(str(root / 'w'), str(root)) == \
        str(root / 'w' / 'epoch_1.pth')
    # ... or to the current directory without one
    monkeypatch.chdir(root)
    assert last_checkpoint('w') == str(root / 'w' / 'epoch_1.pth')
    monkeypatch.chdir(tmp_path)
    assert last_checkpoint(str(root / 'w')) is None
    # configs resolve against the root too
    assert _final_epoch('configs/demo/kd_r18_mbf_synth.py', REPO) == 4
    # subprocesses run in the given root
    log = tmp_path / 'cwd.log'
    run_logged([sys.executable, '-c', 'import os; print(os.getcwd())'],
               str(log), root=str(root))
    assert log.read_text().strip() == str(root)


def test_an_identical_evaluation_is_reused(tmp_path):
    """The test step reruns only when the checkpoint or the command change."""
    root = tmp_path / 'checkout'
    (root / 'configs').mkdir(parents=True)
    (root / 'tools').mkdir()
    (root / 'configs' / 'x.py').write_text(
        'train_cfg = dict(max_epochs=1)\n')
    # a stand-in tools/test.py: counts its runs, writes the --out JSON
    (root / 'tools' / 'test.py').write_text(
        'import json, sys\n'
        'args = sys.argv[1:]\n'
        "open('calls.txt', 'a').write(' '.join(args) + '\\n')\n"
        "json.dump(dict(metrics={'m': 1.0}), "
        "open(args[args.index('--out') + 1], 'w'))\n")
    work = root / 'w'
    work.mkdir()
    ckpt = work / 'epoch_1.pth'
    ckpt.write_bytes(b'x')
    (work / 'last_checkpoint').write_text(str(ckpt))

    def run(**kw):
        job_runner.train_and_test('configs/x.py', 'w', root=str(root), **kw)
        return len((root / 'calls.txt').read_text().splitlines())

    assert run() == 1
    assert run() == 1  # same checkpoint, same command: reused
    assert run(test_args=['--suite', 's.py']) == 2  # another suite
    os.utime(ckpt, (1, 1))  # another checkpoint file
    assert run(test_args=['--suite', 's.py']) == 3

"""The real MMEngine Runner on synthetic RecordIO/.bin files: train, validate,
save, resume, and the CLI tools (including a 2-process gloo run)."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import torch
from mmengine.runner import Runner

from mmfacekd.utils.checkpoint_safety import load_checkpoint_safely

from conftest import ROOT, TINY_IDS, tiny_config

STUDENT = 'configs/demo/arcface_mbf_synth.py'


def _num_classes(cfg):
    cfg.model.head.num_classes = TINY_IDS
    return cfg


def test_train_and_validate(tiny_synth, tmp_path):
    cfg = _num_classes(tiny_config(STUDENT, tiny_synth, str(tmp_path)))
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert osp.isfile(tmp_path / 'epoch_1.pth')
    # written atomically (temp file + rename), no temporary file left
    from mmengine.hooks import CheckpointHook

    from mmfacekd.engine import AtomicLocalBackend
    (hook, ) = [h for h in runner.hooks if isinstance(h, CheckpointHook)]
    assert isinstance(hook.file_backend, AtomicLocalBackend)
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]
    metrics = runner.val_loop.run()
    for s in ('synth_lfw', 'synth_cfp'):
        assert 0 <= metrics[f'{s}/accuracy'] <= 100
        assert f'{s}/tar@far1e-3' in metrics and metrics[f'{s}/xnorm'] > 0
    # the checkpoint loads under torch's weights_only=True (allow-listed types)
    ckpt = torch.load(tmp_path / 'epoch_1.pth', weights_only=True)
    assert ckpt['meta']['epoch'] == 1 and 'message_hub' in ckpt


def test_resume_continues_exactly(tiny_synth, tmp_path):
    """2 epochs straight == 1 epoch, then --resume for the 2nd epoch."""
    full = _num_classes(tiny_config(STUDENT, tiny_synth, str(tmp_path / 'a'),
                                    epochs=2, flip=False))
    full.val_cfg = full.val_dataloader = full.val_evaluator = None
    Runner.from_cfg(full).train()
    ref = torch.load(tmp_path / 'a' / 'epoch_2.pth', weights_only=True)

    half = _num_classes(tiny_config(STUDENT, tiny_synth, str(tmp_path / 'b'),
                                    epochs=2, flip=False))
    half.val_cfg = half.val_dataloader = half.val_evaluator = None
    half.resume = True
    half.load_from = str(tmp_path / 'a' / 'epoch_1.pth')
    runner = Runner.from_cfg(half)
    runner.train()
    got = torch.load(tmp_path / 'b' / 'epoch_2.pth', weights_only=True)
    assert got['meta']['iter'] == ref['meta']['iter'] > 0
    for k, v in ref['state_dict'].items():
        assert torch.allclose(v.float(), got['state_dict'][k].float(),
                              atol=1e-5), k
    assert got['param_schedulers'] == ref['param_schedulers']
    mom_ref = [
        s['momentum_buffer'] for s in ref['optimizer']['state'].values()
    ]
    mom_got = [
        s['momentum_buffer'] for s in got['optimizer']['state'].values()
    ]
    assert all(
        torch.allclose(a, b, atol=1e-5) for a, b in zip(mom_ref, mom_got))


def _write_cfg(cfg, path):
    cfg.dump(str(path))
    return str(path)


def test_cli_train_test_and_dist_train(tiny_synth, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    cfg = _num_classes(tiny_config(STUDENT, tiny_synth, str(tmp_path / 'w')))
    cfg_path = _write_cfg(cfg, tmp_path / 'tiny.py')
    # 2 CPU processes with gloo through torchrun, like on GPUs
    proc = subprocess.run(
        ['bash', osp.join(ROOT, 'tools/dist_train.sh'), cfg_path, '2',
         '--work-dir', str(tmp_path / 'dist')],
        cwd=ROOT, env=dict(env, PYTHON=sys.executable, PORT='29533'),
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = open(glob.glob(str(tmp_path / 'dist' / '*' / '*.log'))[0]).read()
    assert 'gloo process group (rank 1 of world size 2)' in proc.stdout
    assert 'Distributed training: True' in log
    assert 'synth_lfw/accuracy' in log
    ckpt = tmp_path / 'dist' / 'epoch_1.pth'
    assert ckpt.is_file()
    # 2 processes × batch 8 split the epoch: half the iterations of 1 process
    n_images = sum(
        1 for _ in open(osp.join(tiny_synth, 'train.idx'))) - 1 - TINY_IDS
    assert load_checkpoint_safely(str(ckpt))['meta']['iter'] == \
        n_images // 16

    out = tmp_path / 'eval.json'
    proc = subprocess.run(
        [sys.executable, 'tools/test.py', cfg_path, str(ckpt), '--work-dir',
         str(tmp_path / 'test'), '--out', str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.load(open(out))['metrics']
    assert {'synth_lfw/accuracy', 'synth_cfp/accuracy', 'mean/accuracy'} <= \
        set(metrics)
    # the summary table: one row, the synthetic sets' accuracies
    summary = json.load(open(tmp_path / 'test' / 'summary.json'))
    assert [c['key'] for c in summary['columns']] == [
        'synth_cfp/accuracy', 'synth_lfw/accuracy', 'mean/accuracy']
    assert summary['rows'][0]['synth_lfw/accuracy'] == \
        metrics['synth_lfw/accuracy']
    assert '| synth_cfp/accuracy | synth_lfw/accuracy |' in proc.stdout

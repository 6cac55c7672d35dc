"""Corrupt training records: 'raise' (default) stops naming file and key;
'skip' trains on, logs and saves every skipped key, and stops when their
fraction exceeds CorruptRecordHook.max_fraction. Real RecordIO files with
real broken JPEG payloads, the real Runner."""
import json
import os.path as osp
import shutil

import pytest
from mmengine.runner import Runner

from mmfacekd.datasets.recordio import read_index

from conftest import TINY_IDS, tiny_config

STUDENT = 'configs/demo/arcface_mbf_synth.py'
BROKEN_KEYS = (3, 17)


@pytest.fixture
def broken_set(tiny_synth, tmp_path):
    root = str(tmp_path / 'data')
    shutil.copytree(tiny_synth, root)
    index = read_index(osp.join(root, 'train.idx'))
    with open(osp.join(root, 'train.rec'), 'r+b') as f:
        for key in BROKEN_KEYS:
            # magic (4) + length (4) + IRHeader (24): the JPEG's SOI marker
            f.seek(index[key] + 8 + 24)
            f.write(b'\x00\x00\x00\x00')
    return root


def _cfg(root, work_dir, on_corrupt=None, max_fraction=None):
    cfg = tiny_config(STUDENT, root, work_dir)
    cfg.model.head.num_classes = TINY_IDS
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint.save_best = None
    cfg.train_dataloader.drop_last = False  # every index visited once
    if on_corrupt:
        cfg.train_dataloader.dataset.on_corrupt = on_corrupt
    if max_fraction is not None:
        cfg.default_hooks.corrupt_records.max_fraction = max_fraction
    return cfg


def test_default_raises_naming_file_and_key(broken_set, tmp_path):
    runner = Runner.from_cfg(_cfg(broken_set, str(tmp_path / 'w')))
    with pytest.raises(ValueError, match=r'train\.rec record key (3|17)'):
        runner.train()


def test_skip_logs_and_saves_every_skipped_key(broken_set, tmp_path):
    work = tmp_path / 'w'
    runner = Runner.from_cfg(_cfg(broken_set, str(work), 'skip', 0.5))
    runner.train()
    saved = json.load(open(work / 'corrupt_records.json'))
    # every index is visited once per epoch (a random replacement may hit
    # a broken record again: then it is listed again)
    assert {r['key'] for r in saved} == set(BROKEN_KEYS)
    assert all(r['file'].endswith('train.rec') and r['epoch'] == 1
               and 'decode' in r['error'] for r in saved)
    log = open(runner.logger.log_file).read()
    assert f'skipped {len(saved)} corrupt records' in log
    assert 'train.rec:3' in log and 'train.rec:17' in log


def test_skip_stops_above_max_fraction(broken_set, tmp_path):
    runner = Runner.from_cfg(_cfg(broken_set, str(tmp_path / 'w'), 'skip',
                                  0.01))
    with pytest.raises(RuntimeError, match='corrupt_records.json'):
        runner.train()

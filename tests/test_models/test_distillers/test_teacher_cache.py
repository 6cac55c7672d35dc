"""Teacher-embedding cache: written by the real tool from a real RecordIO
set, read by FaceDistiller; equal to the live teacher; stale and unusable
caches refused with the field named; resume; 2-process gloo writing."""
import copy
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.dataset import pseudo_collate
from mmengine.runner import Runner

from mmfacekd.models.distillers.teacher_cache import (
    TeacherCacheError,
    cache_files,
    check_cache_config,
)
from mmfacekd.registry import DATASETS, MODELS
from mmfacekd.utils.teacher_cache_writer import write_teacher_cache

from conftest import ROOT, tiny_model_config

KD = 'configs/demo/kd_r18_mbf_synth.py'


@pytest.fixture
def kd_cfg(tiny_synth, tmp_path):
    """The demo KD config on the tiny set, with a saved random teacher."""
    cfg = tiny_model_config(KD, tiny_synth, str(tmp_path / 'work'))
    torch.manual_seed(0)
    teacher = MODELS.build(cfg.model.teacher)
    ckpt = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), ckpt)
    cfg.model.teacher_ckpt = ckpt
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    return cfg


def _write(cfg, path, dtype='float32'):
    return write_teacher_cache(cfg, out=path, dtype=dtype, batch_size=16,
                               num_workers=0, progress=False)


def _build(cfg, cache=None):
    mcfg = copy.deepcopy(cfg.model)
    if cache is not None:
        mcfg.teacher_cache = cache
    return MODELS.build(mcfg)


def _train_batch(cfg, idx, flips):
    """Training samples ``idx`` through the config's pipeline, with the
    horizontal flip forced to ``flips`` (the cache must follow it)."""
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    for t in ds_cfg.pipeline:
        if 'RandomFlip' in t['type']:
            t['prob'] = 1.0
    flipped = DATASETS.build(ds_cfg)
    for t in ds_cfg.pipeline:
        if 'RandomFlip' in t['type']:
            t['prob'] = 0.0
    plain = DATASETS.build(ds_cfg)
    return pseudo_collate([(flipped if f else plain)[i]
                           for i, f in zip(idx, flips)])


def test_cache_equals_live_teacher_fp32_and_fp16(kd_cfg, tmp_path):
    path32 = _write(kd_cfg, str(tmp_path / 'c32.npy'))
    path16 = _write(kd_cfg, str(tmp_path / 'c16.npy'), 'float16')
    header = json.load(open(cache_files(path32)['header']))
    assert header['complete'] and header['dtype'] == 'float32'
    assert header['dataset']['num_records'] == np.load(path32).shape[0]

    live = _build(kd_cfg)
    cached32 = _build(kd_cfg, path32)
    cached16 = _build(kd_cfg, path16)
    idx = [0, 3, 5, 7, 11, 20, 2, 9]
    data = _train_batch(kd_cfg, idx, [i % 2 == 0 for i in range(8)])
    assert [ds.flip for ds in data['data_samples']] == \
        [i % 2 == 0 for i in range(8)]
    d = live.data_preprocessor(data, True)
    with torch.no_grad():
        ref = live.teacher.extract_feat(d['inputs'])
    e32 = cached32.teacher_cache.lookup(d['data_samples'])
    e16 = cached16.teacher_cache.lookup(d['data_samples'])
    assert (e32 - ref).abs().max() <= 1e-6 * max(1.0, ref.abs().max())
    assert F.cosine_similarity(e16, ref).min() >= 0.9999
    # the flip matters: the other view is a different embedding
    other = cached32.teacher_cache.embeddings[idx[0], 0]
    assert np.abs(other - ref[0].numpy()).max() > 1e-3

    # same distillation loss, and no teacher backbone in memory
    live.student.load_state_dict(cached32.student.state_dict())
    l_live = live(**d, mode='loss')
    l_cache = cached32(**d, mode='loss')
    torch.testing.assert_close(l_cache['distill.loss_kd'],
                               l_live['distill.loss_kd'], rtol=1e-5,
                               atol=1e-7)
    head = sum(p.numel() for p in cached32.teacher.head.parameters())
    assert sum(p.numel() for p in cached32.teacher.parameters()) == head
    with pytest.raises(RuntimeError, match='teacher_cache'):
        cached32.teacher.extract_feat(d['inputs'])


def test_training_with_the_cache_matches_the_live_teacher(kd_cfg, tmp_path):
    """A few Runner iterations each way (same seed, same data order):
    same losses and the same student."""
    path = _write(kd_cfg, str(tmp_path / 'c.npy'))
    out = {}
    for name, cache in (('live', None), ('cache', path)):
        cfg = copy.deepcopy(kd_cfg)
        cfg.work_dir = str(tmp_path / name)
        cfg.randomness = dict(seed=3, deterministic=True)
        if cache:
            cfg.model.teacher_cache = cache
        runner = Runner.from_cfg(cfg)
        runner.train()
        out[name] = runner.model.student.state_dict()
        out[name + '_log'] = runner.message_hub.get_scalar(
            'train/distill.loss_kd').data[0]
    losses_live = np.array(out['live_log'])
    losses_cache = np.array(out['cache_log'])
    assert len(losses_live) >= 5
    np.testing.assert_allclose(losses_cache, losses_live, rtol=1e-4)
    for k, v in out['live'].items():
        if v.is_floating_point():
            torch.testing.assert_close(out['cache'][k], v, rtol=1e-3,
                                       atol=1e-5, msg=k)


def test_stale_caches_name_the_field_and_the_command(kd_cfg, tmp_path):
    path = _write(kd_cfg, str(tmp_path / 'c.npy'))
    # another teacher checkpoint
    other = copy.deepcopy(kd_cfg)
    torch.manual_seed(1)
    t = MODELS.build(other.model.teacher)
    other.model.teacher_ckpt = str(tmp_path / 'teacher2.pth')
    torch.save(dict(state_dict=t.state_dict()), other.model.teacher_ckpt)
    with pytest.raises(TeacherCacheError,
                       match=r'teacher\.sha256.*cache_teacher\.py'):
        _build(other, path)
    # another teacher architecture config (same weights file)
    arch = copy.deepcopy(kd_cfg)
    arch.model.teacher.head.s = 16.0
    with pytest.raises(TeacherCacheError, match=r'teacher\.model'):
        _build(arch, path)
    # other preprocessing
    pre = copy.deepcopy(kd_cfg)
    pre.model.data_preprocessor.std = 127.5
    with pytest.raises(TeacherCacheError, match=r'preprocessing\.std'):
        _build(pre, path)
    # a record of another .rec file, or a row whose key differs
    model = _build(kd_cfg, path)
    data = _train_batch(kd_cfg, [1, 2], [False, True])
    s = data['data_samples']
    src = s[0].img_source
    s[0].set_metainfo(dict(img_source=src.replace('train.rec', 'x.rec')))
    with pytest.raises(TeacherCacheError, match=r'dataset\.rec_path'):
        model.teacher_cache.lookup(s)
    s[0].set_metainfo(dict(img_source=src, sample_idx=2))
    with pytest.raises(TeacherCacheError, match='row 2'):
        model.teacher_cache.lookup(s)
    # the .idx changed after caching (same size, other bytes)
    copy_root = str(tmp_path / 'copy')
    shutil.copytree(kd_cfg.train_dataloader.dataset.data_root, copy_root)
    moved = copy.deepcopy(kd_cfg)
    moved.train_dataloader.dataset.data_root = copy_root
    path2 = _write(moved, str(tmp_path / 'c2.npy'))
    idx_file = osp.join(copy_root, 'train.idx')
    lines = open(idx_file).read().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    open(idx_file, 'w').write('\n'.join(lines) + '\n')
    m2 = _build(moved, path2)
    d2 = _train_batch(moved, [0], [False])
    with pytest.raises(TeacherCacheError, match=r'dataset\.idx_sha256'):
        m2.teacher_cache.lookup(d2['data_samples'])
    # a pipeline the cache cannot serve, and one it was not written for
    jit = copy.deepcopy(kd_cfg)
    jit.model.teacher_cache = path
    jit.train_dataloader.dataset.pipeline.insert(
        1, dict(type='mmcv.RandomResize', scale=(112, 112),
                ratio_range=(0.9, 1.1)))
    with pytest.raises(TeacherCacheError, match='mmcv.RandomResize'):
        check_cache_config(jit)
    with pytest.raises(TeacherCacheError, match='mmcv.RandomResize'):
        _write(jit, str(tmp_path / 'c3.npy'))
    bgr = copy.deepcopy(kd_cfg)
    bgr.model.teacher_cache = path
    bgr.train_dataloader.dataset.pipeline[0]['to_rgb'] = False
    with pytest.raises(TeacherCacheError, match='pipeline'):
        check_cache_config(bgr)
    # missing / incomplete caches
    with pytest.raises(TeacherCacheError, match='cache_teacher.py'):
        _build(kd_cfg, str(tmp_path / 'nothing.npy'))


def test_cache_refused_where_the_teacher_backbone_is_needed(kd_cfg,
                                                            tmp_path):
    path = _write(kd_cfg, str(tmp_path / 'c.npy'))
    cfg = copy.deepcopy(kd_cfg)
    cfg.model.recorders = dict(t3=dict(source='teacher.backbone.layer3'))
    with pytest.raises(TeacherCacheError, match='recorders'):
        _build(cfg, path)
    cfg = copy.deepcopy(kd_cfg)
    cfg.model.teacher_trainable = ['head.weight']
    with pytest.raises(TeacherCacheError, match='teacher_trainable'):
        _build(cfg, path)


def test_interrupted_cache_resumes_and_finishes(kd_cfg, tmp_path, capsys):
    path = _write(kd_cfg, str(tmp_path / 'c.npy'))
    files = cache_files(path)
    full = np.load(path).copy()
    # the state an interrupted run leaves: chunks 1 and 3 not flagged done
    # (their rows garbage), header not complete
    header = json.load(open(files['header']))
    header['complete'] = False
    json.dump(header, open(files['header'], 'w'))
    num_chunks = -(-full.shape[0] // header['chunk'])
    done = np.ones(num_chunks, np.uint8)
    done[[1, 3]] = 0
    np.save(files['progress'], done)
    emb = np.load(path, mmap_mode='r+')
    emb[16:32] = 0
    emb[48:64] = 7
    emb.flush()
    del emb
    with pytest.raises(TeacherCacheError, match='incomplete'):
        _build(kd_cfg, path)
    _write(kd_cfg, path)
    assert 'resuming' in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(path), full)
    assert json.load(open(files['header']))['complete']
    assert not osp.exists(files['progress'])
    # a complete, current cache is left alone
    mtime = os.path.getmtime(path)
    _write(kd_cfg, path)
    assert os.path.getmtime(path) == mtime


def test_two_gloo_processes_write_the_same_cache_and_train_with_it(
        kd_cfg, tmp_path):
    single = _write(kd_cfg, str(tmp_path / 'one.npy'))
    cfg_path = str(tmp_path / 'kd_cfg.py')
    kd_cfg.dump(cfg_path)
    two = str(tmp_path / 'two.npy')
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
         '2', '--master_port', '29531', 'tools/misc/cache_teacher.py',
         cfg_path, '--out', two, '--dtype', 'float32', '--batch-size', '16',
         '--num-workers', '0', '--no-progress', '--launcher', 'pytorch'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = np.load(single), np.load(two)
    assert a.shape == b.shape
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.load(cache_files(two)['keys']),
                                  np.load(cache_files(single)['keys']))
    # and 2 gloo processes train reading it (tools/dist_train.sh)
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', cfg_path, '2', '--work-dir',
         str(tmp_path / 'dist'), '--cfg-options',
         f'model.teacher_cache={two}'],
        cwd=ROOT, env=dict(env, PYTHON=sys.executable, PORT='29533'),
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert osp.isfile(tmp_path / 'dist' / 'epoch_1.pth')

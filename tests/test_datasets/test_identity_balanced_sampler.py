"""IdentityBalancedSampler (P×K + random part): composition, ranks,
determinism, both dataset types, the DataLoader, and EKD with the Runner."""
import os

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from conftest import TINY_IDS, tiny_config
from mmfacekd.datasets import (FaceImageFolder, IdentityBalancedBatchSampler,
                               IdentityBalancedSampler, MXRecordDataset)
from mmfacekd.datasets.samplers import identity_balanced_sampler as ibs
from mmfacekd.registry import DATA_SAMPLERS, MODELS

EKD_DEMO = 'configs/demo/ekd_r18_mbf_synth.py'


@pytest.fixture(scope='module')
def record_set(tiny_synth):
    return MXRecordDataset(tiny_synth)


def _sampler(dataset, monkeypatch=None, rank=0, world=1, **kw):
    if monkeypatch is not None:
        monkeypatch.setattr(ibs, 'get_dist_info', lambda: (rank, world))
    kw.setdefault('seed', 3)
    return IdentityBalancedSampler(dataset, **kw)


def _check_layout(batch, labels, r, p, k):
    assert len(batch) == r + p * k
    groups = [batch[r + i * k:r + (i + 1) * k] for i in range(p)]
    ids = []
    for g in groups:
        assert len(set(labels[g])) == 1
        ids.append(labels[g[0]])
    assert len(set(ids)) == p
    return groups, ids


def test_labels_without_decoding(record_set, tiny_synth):
    labels = record_set.get_gt_labels()
    assert len(labels) == len(record_set)
    # identity-record fast path == every record's header
    slow = [record_set.get_data_info(i)['gt_label']
            for i in range(len(record_set))]
    assert labels.tolist() == slow
    counts = np.bincount(labels)
    assert len(counts) == TINY_IDS and counts.min() >= 4


def test_pxk_composition_and_rank_split(record_set, monkeypatch):
    labels = record_set.get_gt_labels()
    world, r, p, k = 2, 3, 2, 3
    samplers = [_sampler(record_set, monkeypatch, rank, world, num_random=r,
                         num_ids=p, num_per_id=k) for rank in range(world)]
    n = len(record_set)
    assert samplers[0].num_batches == n // (world * r)
    assert len(samplers[0]) == samplers[0].num_batches * (r + p * k)
    per_rank = [list(s.batches()) for s in samplers]
    randoms = []
    for step in range(samplers[0].num_batches):
        step_ids = []
        for rank in range(world):
            batch = per_rank[rank][step]
            groups, ids = _check_layout(batch, labels, r, p, k)
            for g in groups:  # every identity has >= 4 >= K images
                assert len(set(g)) == k
            step_ids += ids
            randoms += batch[:r]
        # identities of one step are disjoint across ranks
        assert len(set(step_ids)) == world * p
    # the random parts of one epoch never repeat an image, on any rank
    assert len(randoms) == len(set(randoms)) == samplers[0].num_batches * \
        world * r
    # the flat stream is the batches in order
    assert list(samplers[1]) == sum(per_rank[1], [])


def test_determinism_and_epochs(record_set):
    a = _sampler(record_set, num_random=4, num_ids=2, num_per_id=2)
    b = _sampler(record_set, num_random=4, num_ids=2, num_per_id=2)
    assert list(a) == list(b) == list(a)
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) != first
    a.set_epoch(0)
    assert list(a) == first
    c = _sampler(record_set, num_random=4, num_ids=2, num_per_id=2, seed=4)
    assert list(c) != first


def test_small_identities_repeat_or_skip(record_set):
    labels = record_set.get_gt_labels()
    counts = np.bincount(labels)
    k = 5  # the tiny set has identities with 4, 5 and 6 images
    small = set(np.nonzero(counts < k)[0].tolist())
    assert small and len(small) < TINY_IDS
    rep = _sampler(record_set, num_random=2, num_ids=3, num_per_id=k,
                   small_ids='repeat')
    seen_small = False
    for epoch in range(3):
        rep.set_epoch(epoch)
        for batch in rep.batches():
            groups, ids = _check_layout(batch, labels, 2, 3, k)
            for g, u in zip(groups, ids):
                if u in small:  # each image once, then repeats
                    seen_small = True
                    assert len(set(g)) == counts[u]
                else:
                    assert len(set(g)) == k
    assert seen_small
    skip = _sampler(record_set, num_random=2, num_ids=3, num_per_id=k,
                    small_ids='skip')
    for batch in skip.batches():
        _, ids = _check_layout(batch, labels, 2, 3, k)
        assert not small & set(ids)


def test_epoch_length_and_errors(record_set, monkeypatch):
    n = len(record_set)
    s = _sampler(record_set, num_random=4, num_ids=2, num_per_id=2,
                 epoch_length='dataset')
    assert s.num_batches == n // 8
    with pytest.raises(ValueError, match='no complete batch'):
        _sampler(record_set, num_random=n + 1)
    with pytest.raises(ValueError, match='num_random >= 1'):
        _sampler(record_set, num_random=0)
    with pytest.raises(ValueError, match='needs 14 distinct identities'):
        _sampler(record_set, monkeypatch, 0, 2, num_random=2, num_ids=7)


def test_batch_sampler_with_dataloader(record_set):
    sampler = DATA_SAMPLERS.build(dict(
        type='IdentityBalancedSampler', num_random=4, num_ids=2,
        num_per_id=2), default_args=dict(dataset=record_set, seed=0))
    with pytest.raises(ValueError, match=r'train_dataloader.batch_size=6 .*'
                       r'num_random \+ num_ids \* num_per_id = 4 \+ 2 \* 2'):
        DATA_SAMPLERS.build(dict(type='IdentityBalancedBatchSampler'),
                            default_args=dict(sampler=sampler, batch_size=6))
    with pytest.raises(TypeError, match='IdentityBalancedSampler'):
        IdentityBalancedBatchSampler(range(10), 8)
    batch_sampler = DATA_SAMPLERS.build(
        dict(type='IdentityBalancedBatchSampler'),
        default_args=dict(sampler=sampler, batch_size=8))
    assert len(batch_sampler) == sampler.num_batches
    assert list(batch_sampler) == list(sampler.batches())
    # no pipeline: items are the records' info dicts (nothing decoded)
    loader = DataLoader(record_set, batch_sampler=batch_sampler,
                        collate_fn=pseudo_collate)
    assert len(loader) == sampler.num_batches
    for data, idx in zip(loader, sampler.batches()):
        assert list(data['sample_idx']) == idx


def test_face_image_folder_labels(tmp_path):
    for ident, n in (('a', 3), ('b', 1), ('c', 4)):
        os.makedirs(tmp_path / ident)
        for i in range(n):
            (tmp_path / ident / f'{i}.jpg').write_bytes(b'')
    ds = FaceImageFolder(str(tmp_path))
    assert ds.get_gt_labels().tolist() == [0, 0, 0, 1, 2, 2, 2, 2]
    assert ds.get_gt_labels().tolist() == [
        ds.get_data_info(i)['gt_label'] for i in range(len(ds))]
    s = _sampler(ds, num_random=2, num_ids=2, num_per_id=2)
    for batch in s.batches():
        _check_layout(batch, ds.get_gt_labels(), 2, 2, 2)
    with pytest.raises(ValueError, match='distinct identities'):
        _sampler(ds, num_random=2, num_ids=3, num_per_id=2, small_ids='skip')


def test_ekd_demo_config_with_runner(tiny_synth, tmp_path):
    """A few EKD iterations with the real Runner, then resume."""
    def tiny(work, epochs):
        cfg = tiny_config(EKD_DEMO, tiny_synth, str(tmp_path / work),
                          epochs=epochs, flip=False)
        for head in (cfg.model.student.head, cfg.model.teacher.head):
            head.num_classes = TINY_IDS
        cfg.model.teacher_ckpt = teacher_ckpt
        cfg.model.student_cls_samples = 4
        cfg.train_dataloader.batch_size = 8
        cfg.train_dataloader.persistent_workers = False
        cfg.train_dataloader.sampler.update(num_random=4, num_ids=2,
                                            num_per_id=2)
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
        return cfg

    from mmengine.config import Config
    teacher_cfg = Config.fromfile(os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), EKD_DEMO)).model.teacher
    teacher_cfg.head.num_classes = TINY_IDS
    torch.manual_seed(0)
    teacher_ckpt = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=MODELS.build(teacher_cfg).state_dict()),
               teacher_ckpt)

    runner = Runner.from_cfg(tiny('ekd', 2))
    loader = runner.train_dataloader
    assert isinstance(loader.batch_sampler, IdentityBalancedBatchSampler)
    runner.train()
    n_iters = runner.iter
    assert n_iters == 2 * (len(runner.train_dataloader.dataset) // 8)
    assert loader.batch_sampler.sampler.epoch == 1  # DistSamplerSeedHook
    log = open(runner.logger.log_file).read()
    for key in ('student.loss_cls', 'distill.loss_ekd', 'distill.ekd.num_pos',
                'distill.ekd.student_anchor', 'distill.ekd.teacher_anchor'):
        assert key in log, key
    anchors = runner.model.distill_losses.ekd.student_anchors.clone()
    assert (anchors != 0).all()
    ckpt = torch.load(tmp_path / 'ekd' / 'epoch_2.pth', weights_only=True)
    state = ckpt['state_dict']
    assert torch.equal(state['distill_losses.ekd.student_anchors'], anchors)

    # resume from epoch 1: the anchors come back, epoch 2 is redone
    cfg = tiny('ekd_resume', 2)
    cfg.resume, cfg.load_from = True, str(tmp_path / 'ekd' / 'epoch_1.pth')
    r2 = Runner.from_cfg(cfg)
    r2.train()
    assert r2.iter == n_iters and r2.epoch == 2
    torch.testing.assert_close(r2.model.distill_losses.ekd.student_anchors,
                               anchors)

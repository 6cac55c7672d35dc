"""IdentityBalancedSampler (P×K + random part): composition, ranks,
determinism, both dataset types, the DataLoader, the per-sample
``with_cls_loss`` flag end to end, and EKD with the Runner."""
import copy
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.dataset import BaseDataset, pseudo_collate
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from mmfacekd.datasets import (
    FaceImageFolder,
    IdentityBalancedBatchSampler,
    IdentityBalancedSampler,
    MXRecordDataset,
)
from mmfacekd.datasets.samplers import SampleIndex, index_meta
from mmfacekd.datasets.samplers import identity_balanced_sampler as ibs
from mmfacekd.registry import DATA_SAMPLERS, MODELS

from conftest import TINY_IDS, tiny_config

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


def _flags(batch):
    return [index_meta(i)['with_cls_loss'] for i in batch]


def test_sample_index_carries_meta():
    idx = SampleIndex(7, with_cls_loss=False)
    assert idx == 7 and hash(idx) == hash(7) and f'{idx}' == '7'
    for other in (pickle.loads(pickle.dumps(idx)), copy.deepcopy(idx)):
        assert type(other) is SampleIndex and other == 7
        assert other.meta == {'with_cls_loss': False}
    assert index_meta(7) == {} and np.arange(9)[idx] == 7


def test_cls_loss_flags_per_sample(record_set):
    r, p, k = 3, 2, 2
    rand = _sampler(record_set, num_random=r, num_ids=p, num_per_id=k,
                    cls_loss_on='random_part')
    for batch in rand.batches():
        assert _flags(batch) == [True] * r + [False] * (p * k)
    # the flat stream carries the same flags (what the DataLoader sees)
    assert _flags(list(rand)) == sum((_flags(b) for b in rand.batches()), [])
    every = _sampler(record_set, num_random=r, num_ids=p, num_per_id=k)
    assert every.cls_loss_on == 'all'
    assert all(all(_flags(b)) for b in every.batches())
    # the same indices either way: the flag does not change the sampling
    assert list(map(int, every)) == list(map(int, rand))
    with pytest.raises(ValueError, match='cls_loss_on'):
        _sampler(record_set, cls_loss_on='first')


class _RenumberingDataset(BaseDataset):
    """Hands a fresh int on as sample_idx: the flags would be lost."""

    def load_data_list(self):
        return [dict(gt_label=i % 3) for i in range(12)]

    def get_data_info(self, idx):
        info = super().get_data_info(idx)
        info['sample_idx'] = int(idx)
        return info


def test_dataset_must_pass_the_index_on():
    ds = _RenumberingDataset()
    _sampler(ds, num_random=2, num_ids=2, num_per_id=2)  # 'all': no check
    with pytest.raises(TypeError, match='does not return the index itself'):
        _sampler(ds, num_random=2, num_ids=2, num_per_id=2,
                 cls_loss_on='random_part')


def _hand_arcface_ce(emb, weight, labels, s, m):
    rows = []
    for e, y in zip(F.normalize(emb), labels):
        cos = F.normalize(weight) @ e
        logit = s * cos
        logit[y] = s * torch.cos(torch.acos(cos[y].clamp(-1, 1)) + m)
        rows.append(torch.logsumexp(logit, 0) - logit[y])
    return torch.stack(rows).mean()


def test_flags_reach_the_loss_end_to_end(tiny_synth):
    """Sampler -> DataLoader worker -> pipeline -> data samples -> distiller:
    the CE is the hand computation over the random part only."""
    r, p, k = 3, 2, 2
    ds = MXRecordDataset(tiny_synth, pipeline=[
        dict(type='LoadFaceImage'), dict(type='PackFaceInputs')])
    sampler = _sampler(ds, num_random=r, num_ids=p, num_per_id=k,
                       cls_loss_on='random_part')
    loader = DataLoader(ds, num_workers=1, collate_fn=pseudo_collate,
                        batch_sampler=IdentityBalancedBatchSampler(
                            sampler, r + p * k))
    data = next(iter(loader))
    first = next(sampler.batches())
    metas = [d.metainfo for d in data['data_samples']]
    assert [m['with_cls_loss'] for m in metas] == \
        [True] * r + [False] * (p * k)
    assert [m['sample_idx'] for m in metas] == [int(i) for i in first]
    assert all(type(m['sample_idx']) is int for m in metas)

    rec = dict(type='FaceRecognizer',
               backbone=dict(type='IResNet', depth=18, base_channels=8,
                             input_size=32, num_features=16),
               head=dict(type='ArcFaceHead', num_classes=TINY_IDS,
                         in_channels=16, s=16.0, m=0.3))
    model = MODELS.build(dict(
        type='FaceDistiller', student=rec, teacher=rec,
        data_preprocessor=dict(resize_to=32),
        distill_losses=dict(ekd=dict(
            type='EKDLoss', fprs=(0.5, 0.2), num_hard_negatives=4,
            inputs=dict(student_embedding='student.embedding',
                        teacher_embedding='teacher.embedding',
                        gt_label='gt_label'))))).eval()
    batch = model.data_preprocessor(data, training=False)
    losses = model(**batch, mode='loss')
    labels = [d.gt_label.item() for d in data['data_samples']]
    with torch.no_grad():
        emb = model.student.extract_feat(batch['inputs'])
    expected = _hand_arcface_ce(emb[:r], model.student.head.weight.detach(),
                                labels[:r], 16.0, 0.3)
    torch.testing.assert_close(losses['student.loss_cls'], expected)
    # the pair loss still sees the P x K part (p identities x k(k-1)/2 pairs)
    assert losses['distill.ekd.num_pos'].item() >= p * k * (k - 1) // 2


def test_ekd_demo_config_with_runner(tiny_synth, tmp_path):
    """A few EKD iterations with the real Runner, then resume."""
    def tiny(work, epochs):
        cfg = tiny_config(EKD_DEMO, tiny_synth, str(tmp_path / work),
                          epochs=epochs, flip=False)
        for head in (cfg.model.student.head, cfg.model.teacher.head):
            head.num_classes = TINY_IDS
        cfg.model.teacher_ckpt = teacher_ckpt
        # the per-sample flag replaces model.student_cls_samples
        cfg.model.pop('student_cls_samples', None)
        cfg.train_dataloader.batch_size = 8
        cfg.train_dataloader.persistent_workers = False
        cfg.train_dataloader.sampler.update(num_random=4, num_ids=2,
                                            num_per_id=2,
                                            cls_loss_on='random_part')
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

"""The Partial FC GKD configs (issue 12): gkd_r50_mbf.py with class-sharded
heads on MS1MV2 (r = 1, 0.3) and WebFace42M (r = 0.2); each loads, agrees
with the config it claims to vary, and builds (and trains a step) on CPU at a
tiny class count."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.structures import DataSample

from mmfacekd.models.heads import PartialFCHead
from mmfacekd.models.losses import ShardedGKDLoss
from mmfacekd.registry import MODELS

from conftest import ROOT

PFC = {'configs/gkd/gkd_r50_mbf_pfc.py': (85742, 1.0),
       'configs/gkd/gkd_r50_mbf_pfc_r0.3.py': (85742, 0.3),
       'configs/gkd/gkd_r50_mbf_pfc_webface42m.py': (2059906, 0.2)}


def _load(path):
    return Config.fromfile(osp.join(ROOT, path)).to_dict()


def _plain(cfg):
    """``cfg`` without its Partial FC parts, to compare with the base."""
    cfg = copy.deepcopy(cfg)
    for key in ('pfc_head', 'pfc_sample_rate'):
        cfg.pop(key, None)
    model = cfg['model']
    for net in ('student', 'teacher'):
        model[net].pop('head')
    gkd = model['distill_losses']['gkd']
    gkd['inputs'].pop('gt_label')
    gkd.pop('type')
    return cfg


@pytest.mark.parametrize('path', sorted(PFC))
def test_heads_and_loss(path):
    num_classes, rate = PFC[path]
    model = _load(path)['model']
    base = _load('configs/gkd/gkd_r50_mbf.py')['model']
    arc = base['student']['head']  # ArcFace s = 64, m = 0.5
    for net in ('student', 'teacher'):
        head = model[net]['head']
        assert head['type'] == 'PartialFCHead'
        assert head['num_classes'] == num_classes
        assert (head['in_channels'], head['s'], head['m1'], head['m2'],
                head['m3']) == (arc['in_channels'], arc['s'], 1.0, arc['m'],
                                0.0)
        assert '_delete_' not in head
    assert model['student']['head']['sample_rate'] == rate
    assert model['teacher']['head'].get('sample_rate', 1.0) == 1.0
    gkd = model['distill_losses']['gkd']
    assert gkd['type'] == 'ShardedGKDLoss'
    assert gkd['inputs']['gt_label'] == 'student.column_label'


def test_ms1mv2_pfc_is_gkd_r50_mbf_with_sharded_heads():
    base = _plain(_load('configs/gkd/gkd_r50_mbf.py'))
    for path in ('configs/gkd/gkd_r50_mbf_pfc.py',
                 'configs/gkd/gkd_r50_mbf_pfc_r0.3.py'):
        assert _plain(_load(path)) == base, path


def test_webface42m_is_the_ms1mv2_pfc_config_on_other_data():
    ms1m = _plain(_load('configs/gkd/gkd_r50_mbf_pfc.py'))
    wf = _plain(_load('configs/gkd/gkd_r50_mbf_pfc_webface42m.py'))
    assert wf['model'].pop('teacher_ckpt') == \
        'checkpoints/arcface_r50_webface42m.pth'
    ms1m['model'].pop('teacher_ckpt')
    train = wf['train_dataloader']['dataset']
    assert (train.pop('data_root'), train.pop('num_classes')) == \
        ('data/webface42m', 2059906)
    for loader in ('val_dataloader', 'test_dataloader'):
        sets = wf[loader]['dataset']['datasets']
        assert [d['ann_file'] for d in sets] == [
            'lfw.bin', 'cfp_fp.bin', 'agedb_30.bin', 'calfw.bin',
            'cplfw.bin']
        assert {d.pop('data_root') for d in sets} == {'data/webface42m'}
        for d in ms1m[loader]['dataset']['datasets']:
            d.pop('data_root')
    for cfg in (wf, ms1m):
        ms1m_train = cfg['train_dataloader']['dataset']
        ms1m_train.pop('data_root', None)
        ms1m_train.pop('num_classes', None)
        for key in ('data_root', 'val_data_root'):
            cfg.pop(key)
    assert wf == ms1m


def test_webface42m_dataset_base():
    cfg = _load('configs/_base_/datasets/webface42m.py')
    assert cfg['train_dataloader']['dataset'] == dict(
        _load('configs/_base_/datasets/ms1mv2.py')['train_dataloader']
        ['dataset'], data_root='data/webface42m', num_classes=2059906)
    with open(osp.join(ROOT, 'configs/_base_/datasets/webface42m.py')) as f:
        doc = f.read()
    for name in ('train.rec', 'train.idx', 'property', 'lfw.bin'):
        assert name in doc


def _tiny(path, num_classes=10):
    cfg = Config.fromfile(osp.join(ROOT, path))
    model = cfg.model
    model.teacher_ckpt = None
    for net in (model.student, model.teacher):
        net.head.num_classes = num_classes
    return model


@pytest.mark.parametrize('path', sorted(PFC))
def test_model_builds_at_a_tiny_class_count(path):
    torch.manual_seed(0)
    model = MODELS.build(_tiny(path))
    for net in (model.student, model.teacher):
        assert isinstance(net.head, PartialFCHead)
        assert net.head.weight.shape == (10, 512)
    assert model.student.head.sample_rate == PFC[path][1]
    assert isinstance(model.distill_losses['gkd'], ShardedGKDLoss)


def test_sampled_config_trains_a_step_on_cpu():
    """r = 0.3 at 10 classes: the sharded student, the teacher on its
    support and ShardedGKDLoss give finite losses and gradients."""
    torch.manual_seed(0)
    model = MODELS.build(_tiny('configs/gkd/gkd_r50_mbf_pfc_r0.3.py')).train()
    images = torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8)
    samples = [DataSample().set_gt_label(c) for c in (1, 7)]
    data = model.data_preprocessor(dict(inputs=list(images),
                                        data_samples=samples), True)
    losses = model(**data, mode='loss')
    assert {'student.loss_cls', 'distill.loss_gkd'} <= set(losses)
    total = sum(v for k, v in losses.items() if k.startswith(('student.loss',
                                                              'distill.loss')))
    total.backward()
    assert torch.isfinite(total)
    grad = model.student.head.weight.grad
    # 3 of 10 columns kept (the 2 positives + 1 negative), the rest untouched
    assert int((grad.abs().sum(1) > 0).sum()) == 3

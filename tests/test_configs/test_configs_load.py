"""Every config under configs/ loads; the cheap models build; each method's
configs wire the loss, teacher and student they claim to."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmfacekd.registry import MODELS

from conftest import ROOT

CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs/**/*.py'), recursive=True))
METHOD_LOSS = {
    'kd': 'KDLoss', 'dkd': 'DKDLoss', 'gkd': 'GKDLoss', 'ekd': 'EKDLoss',
    'fitnet': 'FitNetLoss', 'rkd': 'RKDLoss', 'sp': 'SPLoss',
    'cckd': 'CCKDLoss', 'darkrank': 'DarkRankLoss',
    'shrinkteanet': 'ShrinkTeaNetLoss', 'triplet': 'TripletDistillationLoss',
    'margin_distillation': 'MarginDistillationLoss',
}
# the old top-level paths: thin files inheriting the method folders
SHIMS = {f'configs/{m}_r50_mbf.py': f'configs/{m}/{m}_r50_mbf.py'
         for m in METHOD_LOSS}
SHIMS.update({
    f'configs/{n}.py': f'configs/gkd/{n}.py'
    for n in ('gkd_r50_r18', 'gkd_r100_mbv3l', 'gkd_r50_mbf_authors')})


def _load(path):
    return Config.fromfile(osp.join(ROOT, path))


@pytest.mark.parametrize('path', CONFIGS)
def test_config_loads(path):
    cfg = _load(path)
    if path.startswith('configs/_base_/datasets/'):
        assert {'train_dataloader', 'test_dataloader', 'ijb_datasets'} & \
            set(cfg)
    if 'model' in cfg and cfg.model.get('type') == 'FaceDistiller':
        assert cfg.model.student.type == 'FaceRecognizer'
        assert cfg.model.teacher.type == 'FaceRecognizer'


@pytest.mark.parametrize('old,new', sorted(SHIMS.items()))
def test_old_paths_resolve_to_the_new_configs(old, new):
    with open(osp.join(ROOT, old)) as f:
        code = [ln for ln in f if ln.strip() and not ln.startswith('#')]
    assert len(code) == 1 and 'configs/' not in code[0]
    assert _load(old).to_dict() == _load(new).to_dict()


@pytest.mark.parametrize('method,loss', sorted(METHOD_LOSS.items()))
def test_method_configs(method, loss):
    r50 = _load(f'configs/{method}/{method}_r50_mbf.py').model
    assert r50.type == 'FaceDistiller'
    assert [c.type for c in r50.distill_losses.values()] == [loss]
    assert r50.teacher.backbone.type == 'IResNet'
    assert r50.teacher.backbone.depth == 50
    assert r50.student.backbone.type == 'MobileFaceNet'
    assert r50.teacher_ckpt == 'checkpoints/arcface_r50_ms1mv2.pth'
    # the teacher is the network its checkpoint was trained with
    teacher = _load('configs/arcface/arcface_r50_ms1mv2.py').model
    assert r50.teacher.backbone == teacher.backbone
    assert r50.teacher.head == teacher.head
    demo = _load(f'configs/demo/{method}_r18_mbf_synth.py').model
    assert [c.type for c in demo.distill_losses.values()] == [loss]


def test_gkd_headline_and_ablations():
    gkd = _load('configs/gkd/gkd_r50_mbf.py').model.distill_losses.gkd
    assert (gkd.tau, gkd.lambda1, gkd.lambda2, gkd.lambda3) == \
        (0.93, 8.0, 1.0, 0.0)
    ablations = glob.glob(osp.join(ROOT, 'configs/gkd/ablations/*.py'))
    assert len(ablations) == 15  # Tables 1-3 + the T = 1 literal reading
    for p in ablations:
        assert _load(osp.relpath(p, ROOT)).model.distill_losses.gkd.type == \
            'GKDLoss'


def test_cakd_configs():
    for t, grid in (('swin_t', (7, 7)), ('vit_t', (12, 12))):
        model = _load(f'configs/cakd/cakd_{t}_mbf.py').model
        assert model.distill_losses.cakd.type == 'CAKDLoss'
        assert model.connectors.urfm_t.token_grid == grid
        assert model.teacher_trainable == ['backbone.prompts']
        arch = _load(f'configs/arcface/arcface_{t}_ms1mv2.py').model
        assert model.teacher.head == arch.head


def test_ijb_sets_are_defined_once():
    suite = _load('configs/_base_/datasets/paper_suite.py')
    for name in ('ijbb', 'ijbc'):
        single = _load(f'configs/_base_/datasets/{name}.py')
        assert single.test_dataloader.dataset == suite.ijb_datasets[name]
        assert single.test_evaluator == suite.ijb_evaluators[name]
        assert single.test_dataloader.dataset in \
            suite.test_dataloader.dataset.datasets
        assert single.test_evaluator in suite.test_evaluator


DEMO_MODELS = sorted(p for p in CONFIGS if p.startswith('configs/demo/'))


@pytest.mark.parametrize('path', DEMO_MODELS)
def test_demo_models_build(path):
    """The CPU-sized demo models build (the full-size ones are only loaded)."""
    model = _load(path).model
    if model.get('type') == 'FaceDistiller':
        model.teacher_ckpt = None
        for lcfg in model.distill_losses.values():
            if lcfg.get('prototype_file'):
                lcfg.prototype_file = None
    torch.manual_seed(0)
    assert MODELS.build(model) is not None

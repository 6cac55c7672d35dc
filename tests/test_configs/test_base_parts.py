"""The shared parts under configs/_base_/ that leaf configs reference by
variable (`{{_base_.x}}` or `_base_.x`): losses, the P x K sampler and the
MobileFaceNet-student distiller."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from mmfacekd.registry import MODELS

from conftest import ROOT

LOSS_FILES = sorted(
    glob.glob(osp.join(ROOT, 'configs/_base_/losses/*.py')))
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs/**/*.py'), recursive=True))


def _load(path):
    return Config.fromfile(osp.join(ROOT, path))


def test_loss_files_exist():
    names = {osp.basename(p)[:-3] for p in LOSS_FILES}
    assert {'kd', 'dkd', 'sp', 'shrinkteanet', 'fitnet', 'triplet', 'ekd',
            'margin_distillation', 'cckd', 'rkd', 'darkrank',
            'cakd'} <= names


@pytest.mark.parametrize('path', LOSS_FILES, ids=osp.basename)
def test_loss_file_variables_build(path):
    """`_base_/losses/<m>.py` defines `<m>_loss` (and only `<m>_*` names, so
    several of them can be bases of one config); every `*_loss` builds, as
    the distiller builds it."""
    method = osp.basename(path)[:-3]
    cfg = Config.fromfile(path).to_dict()
    assert f'{method}_loss' in cfg
    assert all(k.startswith(f'{method}_') for k in cfg), sorted(cfg)
    for name, value in cfg.items():
        if not name.endswith('_loss'):
            continue
        value = dict(value)
        # the distiller reads `inputs` (its recorder/connector names)
        assert value.pop('inputs')
        if value['type'] == 'MarginDistillationLoss':
            # running centers instead of the (absent) teacher checkpoint
            value.update(prototype_file=None, num_classes=4)
        loss = MODELS.build(value)
        assert type(loss).__name__ == value['type']


def test_pk_sampler_defaults():
    cfg = _load('configs/_base_/samplers/pk_sampler.py')
    loader = cfg.pk_train_dataloader
    assert loader.sampler == cfg.pk_sampler
    assert loader.sampler.type == 'IdentityBalancedSampler'
    assert loader.batch_size == \
        cfg.num_random + cfg.num_ids * cfg.num_per_id == 64


@pytest.mark.parametrize('path', CONFIGS)
def test_identity_balanced_batches_add_up(path):
    """Every config with the P x K sampler: batch_size = random part + P x K,
    the batch sampler that checks it, and (if set) the classification loss on
    the random part."""
    cfg = _load(path)
    loader = cfg.get('train_dataloader')
    if not loader or loader.get('sampler', {}).get('type') != \
            'IdentityBalancedSampler':
        return
    s = loader.sampler
    assert '_delete_' not in s
    assert 'shuffle' not in s  # DefaultSampler's keys replaced
    assert loader.batch_size == s.num_random + s.num_ids * s.num_per_id
    assert loader.batch_sampler.type == 'IdentityBalancedBatchSampler'
    assert loader.drop_last is False
    assert (s.num_random, s.num_ids, s.num_per_id) == \
        (cfg.num_random, cfg.num_ids, cfg.num_per_id)
    if 'student_cls_samples' in cfg.model:
        assert cfg.model.student_cls_samples == s.num_random


@pytest.mark.parametrize('skeleton', ['r50_mbf', 'swin_t_mbf', 'vit_t_mbf'])
def test_distiller_skeletons_share_the_mbf_student(skeleton):
    model = _load(f'configs/_base_/distillers/{skeleton}.py').model
    shared = _load('configs/_base_/distillers/mbf_student.py').mbf_distiller
    assert model.type == 'FaceDistiller'
    for key, value in shared.items():
        assert model[key] == value
    # the student is the network of the MobileFaceNet ArcFace baseline
    mbf = _load('configs/_base_/models/mobilefacenet.py').model
    backbone = {k: v for k, v in mbf.backbone.items() if k != 'fp16'}
    assert model.student.backbone == backbone
    assert model.student.head == mbf.head

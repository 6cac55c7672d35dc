"""tools/misc/convert_insightface.py on state dicts in insightface's naming.

The weights come from ``insightface_reference.py``, a functional
re-statement of arcface_torch's iresnet/mbf (its key list is checked against
the one recorded from insightface's own modules in
``tests/data/insightface_reference.json``); the converted checkpoint must
load strictly where mmfacekd uses it (teacher loading, MMEngine's
``load_checkpoint`` behind ``load_from``) and embed exactly like the
reference forward of the same weights.
"""
import importlib.util
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from mmfacekd.deployment import (
    CheckpointMismatchError,
    ConversionError,
    merge_fc_shards,
    order_shards,
    recognizer_config,
)
from mmfacekd.models.distillers import load_teacher_weights
from mmfacekd.registry import MODELS
from mmfacekd.utils import load_checkpoint_safely

from .insightface_reference import InsightfaceReference

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
REF = json.load(open(osp.join(ROOT, 'tests', 'data',
                              'insightface_reference.json')))
MBF_CFG = osp.join(ROOT, 'configs/arcface/arcface_mbf_ms1mv2.py')
R18_CFG = osp.join(ROOT, 'configs/arcface/arcface_r18_ms1mv2.py')


def _tool():
    spec = importlib.util.spec_from_file_location(
        'convert_insightface', osp.join(ROOT, 'tools/misc/'
                                        'convert_insightface.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def mbf_ref():
    return InsightfaceReference('mbf', seed=3)


@pytest.fixture(scope='module')
def r18_ref():
    return InsightfaceReference('iresnet', seed=5, layers=(2, 2, 2, 2))


def _recognizer(config: str, num_classes=None):
    cfg = Config.fromfile(config)
    model_cfg, _ = recognizer_config(cfg, keep_head=num_classes is not None)
    if num_classes is not None:
        model_cfg['head'] = dict(model_cfg['head'], num_classes=num_classes)
    return MODELS.build(model_cfg).eval()


def _save_shards(tmp_path, weight: torch.Tensor, world: int, names=None):
    """Split like PartialFC_V2 (rank r: C // W + (r < C % W) classes)."""
    c = len(weight)
    sizes = [c // world + int(r < c % world) for r in range(world)]
    paths, start = [], 0
    for r, n in enumerate(sizes):
        path = str(tmp_path / (names or 'softmax_fc_gpu_{}.pt').format(r))
        torch.save({'weight': weight[start:start + n].clone()}, path)
        paths.append(path)
        start += n
    return paths


def test_reference_naming_is_insightface(mbf_ref, r18_ref):
    for ref, name in ((mbf_ref, 'mbf'), (r18_ref, 'iresnet18')):
        assert [[k, list(v.shape)] for k, v in ref.state.items()] == \
            REF['keys'][name]


def test_mbf_teacher_with_fc_shards(tmp_path, mbf_ref):
    torch.save(mbf_ref.state, tmp_path / 'backbone.pth')
    centres = torch.randn(10, 512, generator=torch.Generator().manual_seed(1))
    shards = _save_shards(tmp_path, centres, world=3)  # 4, 3, 3 classes
    out = str(tmp_path / 'converted.pth')
    rc = _tool().main([MBF_CFG, str(tmp_path / 'backbone.pth'), '--out',
                       out, '--fc-shards', str(tmp_path / 'softmax_fc_*.pt'),
                       '--cfg-options', 'model.head.num_classes=10'])
    assert rc == 0
    meta = load_checkpoint_safely(out)['meta']
    assert meta['num_classes'] == 10 and meta['fc_shards'] == sorted(shards)
    # as a teacher: FaceDistiller's strict loader, head included
    teacher = _recognizer(MBF_CFG, num_classes=10)
    load_teacher_weights(teacher, out)
    x = torch.randn(3, 3, 112, 112, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = teacher.extract_feat(x)
    want = mbf_ref(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * want.abs().max())
    assert torch.equal(teacher.head.weight.detach(), centres)


def test_iresnet_student_init_via_load_from(tmp_path, r18_ref):
    ref = r18_ref
    state = {f'module.{k}': v for k, v in ref.state.items()}  # DDP names
    torch.save(state, tmp_path / 'backbone.pth')
    out = str(tmp_path / 'r18.pth')
    assert _tool().main([R18_CFG, str(tmp_path / 'backbone.pth'),
                         '--out', out]) == 0
    student = _recognizer(R18_CFG)
    load_checkpoint(student, out, strict=True)  # what load_from runs
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = student.extract_feat(x)
    want = ref(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * want.abs().max())


def test_shards_are_ordered_by_rank_number(tmp_path):
    centres = torch.arange(25 * 4, dtype=torch.float32).reshape(25, 4)
    paths = _save_shards(tmp_path, centres, world=11)
    # lexicographic order would put gpu_10 before gpu_2
    assert order_shards(sorted(paths))[2].endswith('softmax_fc_gpu_2.pt')
    assert torch.equal(merge_fc_shards(sorted(paths)[::-1], 25), centres)
    with pytest.raises(ConversionError, match=r'missing rank\(s\) \[5\]'):
        merge_fc_shards(paths[:5] + paths[6:])
    with pytest.raises(ConversionError, match='owns 3 of 25 classes'):
        merge_fc_shards(paths[::-1], keep_order=True)  # 2, ..., 3 classes
    with pytest.raises(ConversionError, match='owns 4 of 40 classes'):
        merge_fc_shards(paths, num_classes=40)  # the config's head: 40


def test_other_architecture_is_refused(tmp_path, mbf_ref, capsys):
    torch.save(mbf_ref.state, tmp_path / 'backbone.pth')
    rc = _tool().main([R18_CFG, str(tmp_path / 'backbone.pth'), '--out',
                       str(tmp_path / 'x.pth')])
    err = capsys.readouterr().err
    assert rc == 1 and not (tmp_path / 'x.pth').exists()
    assert 'backbone.pth does not fit the model of' in err
    assert 'another architecture' in err and 'missing keys' in err
    with pytest.raises(CheckpointMismatchError, match='shape mismatches'):
        from mmfacekd.deployment import convert_insightface
        small = MODELS.build(dict(type='FaceRecognizer', backbone=dict(
            type='MobileFaceNet', num_features=128)))
        convert_insightface(small, str(tmp_path / 'backbone.pth'))

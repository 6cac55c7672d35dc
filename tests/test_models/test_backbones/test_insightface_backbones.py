"""Backbones vs insightface arcface_torch: key names/shapes and outputs.

``tests/data/insightface_reference.json`` holds the state-dict layout and the
outputs of insightface's own modules under a deterministic weight fill
(see ``insightface_fill.py``); this test builds ours, fills it the same way
and compares.
"""
import json
import os.path as osp

import pytest
import torch

from mmfacekd.registry import MODELS

from insightface_fill import deterministic_fill_, reference_input  # noqa: E402

REF = json.load(open(osp.join(osp.dirname(__file__), '..', '..', 'data',
                              'insightface_reference.json')))

CONFIGS = {
    'iresnet18': dict(type='IResNet', depth=18),
    'iresnet34': dict(type='IResNet', depth=34),
    'iresnet50': dict(type='IResNet', depth=50),
    'iresnet100': dict(type='IResNet', depth=100),
    'iresnet200': dict(type='IResNet', depth=200),
    'mbf': dict(type='MobileFaceNet'),
    'mbf_large': dict(type='MobileFaceNet', blocks=(2, 8, 12, 4), scale=4),
}


@pytest.mark.parametrize('name', list(CONFIGS))
def test_state_dict_layout_equals_insightface(name):
    model = MODELS.build(CONFIGS[name])
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == REF['keys'][name]


@pytest.mark.parametrize('name,cfg', [
    ('iresnet18', CONFIGS['iresnet18']),
    ('iresnet50', CONFIGS['iresnet50']),
    ('mbf', CONFIGS['mbf']),
    ('mbf_large', CONFIGS['mbf_large']),
    ('iresnet18_num_features_128', dict(type='IResNet', depth=18,
                                        num_features=128)),
    ('mbf_num_features_128', dict(type='MobileFaceNet', num_features=128)),
])
def test_same_embedding_as_insightface(name, cfg):
    model = MODELS.build(cfg).double().eval()
    deterministic_fill_(model)
    # a strict load of the filled state dict into a fresh model also works
    fresh = MODELS.build(cfg).double().eval()
    fresh.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        out = fresh(reference_input())
    ref = torch.tensor(REF['outputs'][name], dtype=torch.float64)
    assert torch.allclose(out, ref, rtol=1e-9, atol=1e-9 * ref.abs().max())


def test_small_variants_and_errors():
    x = torch.randn(2, 3, 112, 112)
    net = MODELS.build(dict(type='IResNet', depth=18, base_channels=16,
                            num_features=64))
    assert net(x).shape == (2, 64)
    mbf = MODELS.build(dict(type='MobileFaceNet', scale=1,
                            expansion=(32, 64, 128), conv_sep_channels=128,
                            num_features=32, blocks=(1, 2, 2, 1)))
    assert mbf(x).shape == (2, 32)
    with pytest.raises(KeyError, match='depth must be one of'):
        MODELS.build(dict(type='IResNet', depth=42))
    # the embedding BN's gamma is frozen at 1 like insightface
    assert not net.features.weight.requires_grad


def test_mmpretrain_backbone_through_neck():
    model = MODELS.build(dict(
        type='FaceRecognizer',
        backbone=dict(type='mmpretrain.MobileNetV3', arch='small'),
        neck=dict(type='EmbeddingNeck', in_channels=576, num_features=128,
                  pooling='gdc', feat_size=4),
        head=dict(type='ArcFaceHead', num_classes=10, in_channels=128)))
    model.eval()
    assert model(torch.randn(2, 3, 112, 112), mode='tensor').shape == (2, 128)

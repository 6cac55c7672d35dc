"""Margin heads against their formulas."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmfacekd.models.heads import combined_margin_cosine
from mmfacekd.registry import MODELS


def test_arcface_logits_formula():
    torch.manual_seed(0)
    head = MODELS.build(dict(type='ArcFaceHead', num_classes=7, in_channels=5))
    x = torch.randn(4, 5)
    y = torch.tensor([0, 3, 6, 2])
    out = head.get_logits(x, y)
    cos = F.normalize(x) @ F.normalize(head.weight).t()
    assert torch.allclose(out['logits'], 64 * cos, atol=1e-5)
    expected = 64 * cos.clone()
    for i, c in enumerate(y.tolist()):
        expected[i, c] = 64 * math.cos(math.acos(cos[i, c].item()) + 0.5)
    assert torch.allclose(out['margin_logits'], expected, atol=1e-4)
    loss = head.loss_by_logits(out, y)['loss_cls']
    assert torch.allclose(loss, F.cross_entropy(expected, y), atol=1e-5)


@pytest.mark.parametrize('m', [0.4, 0.35])
def test_cosface_formula(m):
    head = MODELS.build(dict(type='CosFaceHead', num_classes=5, in_channels=3,
                             m=m, s=30.0))
    x, y = torch.randn(3, 3), torch.tensor([1, 4, 0])
    cos = F.normalize(x) @ F.normalize(head.weight).t()
    expected = 30 * (cos - m * F.one_hot(y, 5))
    assert torch.allclose(head.get_logits(x, y)['margin_logits'], expected,
                          atol=1e-5)


def test_combined_margin_formula():
    cos = torch.tensor([[0.3, 0.9, -0.2], [0.5, 0.1, 0.7]])
    y = torch.tensor([1, 2])
    out = combined_margin_cosine(cos, y, 1.0, 0.3, 0.2, 'exact')
    assert out[0, 1] == pytest.approx(math.cos(math.acos(0.9) + 0.3) - 0.2,
                                      abs=1e-6)
    assert out[1, 2] == pytest.approx(math.cos(math.acos(0.7) + 0.3) - 0.2,
                                      abs=1e-6)
    assert torch.equal(out[0, [0, 2]], cos[0, [0, 2]])


def test_gradient_modes():
    cos = torch.tensor([[0.6, 0.2]], requires_grad=True)
    y = torch.tensor([0])
    combined_margin_cosine(cos, y, 1.0, 0.5, 0.0,
                           'straight_through')[0, 0].backward()
    assert cos.grad[0, 0].item() == pytest.approx(1.0)  # identity gradient
    cos.grad = None
    combined_margin_cosine(cos, y, 1.0, 0.5, 0.0, 'exact')[0, 0].backward()
    # d cos(acos(c) + m) / dc = sin(θ + m) / sin θ
    theta = math.acos(0.6)
    assert cos.grad[0, 0].item() == pytest.approx(
        math.sin(theta + 0.5) / math.sin(theta), rel=1e-5)
    # beyond pi: exact mode falls back to cos θ − m·sin m
    c = torch.tensor([[-0.99]])
    out = combined_margin_cosine(c, torch.tensor([0]), 1.0, 0.5, 0.0, 'exact')
    assert out.item() == pytest.approx(-0.99 - 0.5 * math.sin(0.5), abs=1e-6)


def test_ignore_label_minus_one():
    cos = torch.rand(2, 4)
    out = combined_margin_cosine(cos, torch.tensor([-1, 2]), 1.0, 0.5, 0.0)
    assert torch.equal(out[0], cos[0])
    assert not torch.equal(out[1], cos[1])

"""KDLoss against a hand-written formula."""
import math

import pytest
import torch

import mmfacekd.models.losses  # noqa: F401  (registers the losses)
from mmfacekd.models.losses import KDLoss
from mmfacekd.registry import MODELS

pytestmark = pytest.mark.usefixtures('single_thread')


def _hand_kd(student, teacher, temperature):
    """KL(p_T || p_S) * T^2, summed over classes, averaged over the batch,
    with explicit loops and math.exp/math.log."""
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        a = [v / temperature for v in s_row]
        b = [v / temperature for v in t_row]
        ma, mb = max(a), max(b)
        lza = ma + math.log(sum(math.exp(v - ma) for v in a))
        lzb = mb + math.log(sum(math.exp(v - mb) for v in b))
        for ai, bi in zip(a, b):
            log_pt, log_ps = bi - lzb, ai - lza
            total += math.exp(log_pt) * (log_pt - log_ps)
    return total / len(student) * temperature**2


@pytest.mark.parametrize('temperature', [1.0, 4.0, 0.5])
def test_kd_matches_hand_formula(temperature):
    gen = torch.Generator().manual_seed(1)
    student = torch.randn(5, 11, generator=gen, dtype=torch.float64) * 3
    teacher = torch.randn(5, 11, generator=gen, dtype=torch.float64) * 3
    loss = MODELS.build(
        dict(type='KDLoss', temperature=temperature, loss_weight=0.7))
    value = loss(student, teacher)
    expected = 0.7 * _hand_kd(student, teacher, temperature)
    assert value.dim() == 0
    assert value.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_kd_zero_for_identical_logits_and_gradient():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 9, generator=gen, dtype=torch.float64)
    assert KDLoss()(logits, logits).abs().item() < 1e-12

    student = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    teacher = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    KDLoss(temperature=2.0)(student, teacher).backward()
    # d/dz_S [T^2/B KL] = T/B (p_S - p_T); the teacher is detached.
    p_s = torch.softmax(student.detach() / 2.0, dim=1)
    p_t = torch.softmax(teacher.detach() / 2.0, dim=1)
    assert torch.allclose(student.grad, 2.0 / 3 * (p_s - p_t), atol=1e-12)
    assert teacher.grad is None


def test_kd_finite_for_large_cosine_logits():
    gen = torch.Generator().manual_seed(3)
    cos = torch.rand(8, 1000, generator=gen) * 2 - 1
    student = (64 * cos).requires_grad_(True)
    teacher = 64 * torch.roll(cos, 1, dims=1)
    for temp in (1.0, 4.0):
        value = KDLoss(temperature=temp)(student, teacher)
        value.backward()
        assert torch.isfinite(value)
        assert torch.isfinite(student.grad).all()
        student.grad = None

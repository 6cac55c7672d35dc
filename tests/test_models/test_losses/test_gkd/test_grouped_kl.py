"""Eq. 5, 6, 9 (:mod:`mmfacekd.models.losses.gkd.grouped_kl`) against
python-math loops and a per-row autograd implementation (``refs``)."""
import pytest
import torch

from mmfacekd.models.losses import KDLoss, grouped_kl_terms

from . import refs
from .refs import F64


@pytest.mark.parametrize('temperature', [1.0, 3.0])
def test_eq9_identity_and_terms_match_hand_computation(temperature):
    gen = torch.Generator().manual_seed(0)
    batch, num_classes = 6, 23
    student = 4 * torch.randn(batch, num_classes, generator=gen, dtype=F64)
    teacher = 4 * torch.randn(batch, num_classes, generator=gen, dtype=F64)
    mask = torch.rand(batch, num_classes, generator=gen) < 0.35
    mask[0] = True  # Psi empty
    mask[1] = False  # Phi empty
    mask[2] = False
    mask[2, 5] = True  # |Phi| = 1
    terms = grouped_kl_terms(student, teacher, mask, temperature)
    for i in range(batch):
        phi = set(mask[i].nonzero().flatten().tolist())
        hand = refs.hand_terms(student[i].tolist(), teacher[i].tolist(), phi,
                           temperature)
        for name in ('primary', 'secondary', 'binary'):
            assert getattr(terms, f'{name}_kd')[i].item() == pytest.approx(
                hand[name], rel=1e-9, abs=1e-12), name
        assert terms.p_phi_t[i].item() == pytest.approx(hand['p_phi_t'],
                                                        abs=1e-12)
        # eq. 9: p_phi^T P-KD + p_psi^T S-KD + B-KD = KL(p^T || p^S)
        recomposed = (terms.p_phi_t[i] * terms.primary_kd[i] +
                      terms.p_psi_t[i] * terms.secondary_kd[i] +
                      terms.binary_kd[i])
        assert recomposed.item() == pytest.approx(hand['full'], rel=1e-9)


def test_eq9_identity_for_many_random_groupings():
    gen = torch.Generator().manual_seed(1)
    for trial in range(20):
        num_classes = int(torch.randint(2, 60, (1, ), generator=gen))
        scale = float(torch.rand(1, generator=gen)) * 20
        student = scale * torch.randn(
            3, num_classes, generator=gen, dtype=F64)
        teacher = scale * torch.randn(
            3, num_classes, generator=gen, dtype=F64)
        frac = float(torch.rand(1, generator=gen))
        mask = torch.rand(3, num_classes, generator=gen) < frac
        temp = float(torch.rand(1, generator=gen)) * 4 + 0.25
        terms = grouped_kl_terms(student, teacher, mask, temp)
        full = KDLoss(temperature=temp)
        for i in range(3):
            kl = full(student[i:i + 1], teacher[i:i + 1]) / temp**2
            recomposed = (terms.p_phi_t[i] * terms.primary_kd[i] +
                          terms.p_psi_t[i] * terms.secondary_kd[i] +
                          terms.binary_kd[i])
            assert recomposed.item() == pytest.approx(
                kl.item(), rel=1e-8, abs=1e-12), trial


def test_gradients_match_autograd_of_slow_implementation():
    gen = torch.Generator().manual_seed(2)
    batch, num_classes, temp = 5, 17, 2.0
    student = 3 * torch.randn(batch, num_classes, generator=gen, dtype=F64)
    teacher = 3 * torch.randn(batch, num_classes, generator=gen, dtype=F64)
    mask = torch.rand(batch, num_classes, generator=gen) < 0.4
    mask[0] = True
    mask[1] = False
    weights = torch.rand(batch, 3, generator=gen, dtype=F64)

    s_fast = student.clone().requires_grad_(True)
    terms = grouped_kl_terms(s_fast, teacher, mask, temp)
    (weights[:, 0] * terms.primary_kd + weights[:, 1] * terms.secondary_kd +
     weights[:, 2] * terms.binary_kd).sum().backward()

    s_slow = student.clone().requires_grad_(True)
    slow = refs.slow_terms(s_slow, teacher, mask, temp)
    (weights[:, 0] * slow['primary'] + weights[:, 1] * slow['secondary'] +
     weights[:, 2] * slow['binary']).sum().backward()
    assert torch.allclose(s_fast.grad, s_slow.grad, atol=1e-12, rtol=1e-9)
    assert s_fast.grad.abs().max() > 1e-3  # not trivially zero


# ------------------------------------------------------------ numerics
def _confident_teacher(seed, shape, k, boost, student_scale):
    """float64 student / teacher logits of ``shape`` whose teacher puts
    almost all its mass on the first ``k`` classes (their logits raised by
    ``boost``), and the mask of those ``k`` classes."""
    gen = torch.Generator().manual_seed(seed)
    student = student_scale * torch.randn(*shape, generator=gen, dtype=F64)
    teacher = torch.randn(*shape, generator=gen, dtype=F64)
    teacher[:, :k] += boost
    mask = torch.zeros(*shape, dtype=torch.bool)
    mask[:, :k] = True
    return student, teacher, mask


def test_tiny_group_shares_are_summed_directly():
    """A confident teacher puts ~1e-13 of its mass on Psi: Z_psi must not
    be taken as Z - Z_phi (float32 cancellation)."""
    student, teacher, mask = _confident_teacher(13, (4, 3000), 5, 40.0,
                                                student_scale=3)
    t64 = grouped_kl_terms(student, teacher, mask, 1.0)
    t32 = grouped_kl_terms(student.float(), teacher.float(), mask, 1.0)
    assert (t64.p_psi_t < 1e-12).all() and (t64.p_psi_t > 0).all()
    assert torch.allclose(t32.secondary_kd.double(), t64.secondary_kd,
                          rtol=1e-4)
    assert torch.allclose(t32.p_psi_t.double(), t64.p_psi_t, rtol=1e-4)


def test_gradient_with_very_unbalanced_group_coefficients():
    """Secondary-KD weight on a Psi group holding 1e-15 of the teacher
    mass: the per-group gradient coefficients differ by ~1e15 and must be
    selected exactly, not as c_psi + m (c_phi - c_psi)."""
    student, teacher, mask = _confident_teacher(14, (3, 50), 4, 35.0,
                                                student_scale=2)
    s_fast = student.clone().requires_grad_(True)
    terms = grouped_kl_terms(s_fast, teacher, mask, 1.0)
    (terms.primary_kd + terms.secondary_kd).sum().backward()
    s_slow = student.clone().requires_grad_(True)
    slow = refs.slow_terms(s_slow, teacher, mask, 1.0)
    (slow['primary'] + slow['secondary']).sum().backward()
    assert torch.allclose(s_fast.grad, s_slow.grad, rtol=1e-9, atol=1e-12)


def test_underflowing_groups_are_exact():
    """Psi far below Phi: float32 with a row-max shift would underflow."""
    student = torch.full((2, 50), -64., dtype=F64)
    student[:, 0] = 64.
    student[:, 1:10] += torch.linspace(0, 3, 9, dtype=F64)
    teacher = student.flip(1).clone()
    teacher[:, 0] = 64.
    mask = torch.zeros(2, 50, dtype=torch.bool)
    mask[:, 0] = True
    ref = grouped_kl_terms(student, teacher, mask, 1.0)
    terms = grouped_kl_terms(student.float(), teacher.float(), mask, 1.0)
    hand = refs.hand_terms(student[0].tolist(), teacher[0].tolist(), {0}, 1.0)
    assert ref.secondary_kd[0].item() == pytest.approx(hand['secondary'],
                                                       rel=1e-9)
    assert terms.secondary_kd[0].item() == pytest.approx(hand['secondary'],
                                                         rel=1e-5)
    assert torch.isfinite(torch.stack(list(terms))).all()

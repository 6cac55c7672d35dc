"""GKDLoss (Grouped Knowledge Distillation, AAAI 2023) against independent,
slow computations written here: python-math loops for the equations, a full
sort for eq. 3, a per-row autograd implementation for the gradients and a
literal re-implementation of the authors' batch/fixed procedures."""
import math

import pytest
import torch

import mmfacekd.models.losses  # noqa: F401  (registers the losses)
from mmfacekd.models.losses import (GKDLoss, KDLoss, grouped_kl_terms,
                                    primary_group_mask, select_batch_k,
                                    select_primary_k)
from mmfacekd.registry import MODELS

F64 = torch.float64


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """Small tensors: one intra-op thread is faster and load-independent."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- references
def _lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def _hand_terms(s_row, t_row, phi, temperature):
    """Eq. 5, 6 and the three KLs for one sample with python floats."""
    a = [v / temperature for v in s_row]
    b = [v / temperature for v in t_row]
    groups = [sorted(phi), [i for i in range(len(a)) if i not in phi]]
    lse_a, lse_b = _lse(a), _lse(b)
    kls, p_t, p_s = [], [], []
    for g in groups:
        if not g:
            kls.append(0.0)
            p_t.append(0.0)
            p_s.append(0.0)
            continue
        ga, gb = _lse([a[i] for i in g]), _lse([b[i] for i in g])
        kls.append(
            sum(
                math.exp(b[i] - gb) * ((b[i] - gb) - (a[i] - ga))
                for i in g))
        p_t.append(math.exp(gb - lse_b))
        p_s.append(math.exp(ga - lse_a))
    binary = sum(q * math.log(q / p) for q, p in zip(p_t, p_s) if q > 0)
    full = sum(
        math.exp(b[i] - lse_b) * ((b[i] - lse_b) - (a[i] - lse_a))
        for i in range(len(a)))
    return dict(primary=kls[0], secondary=kls[1], binary=binary,
                p_phi_t=p_t[0], p_psi_t=p_t[1], full=full)


def _slow_terms(student, teacher, mask, temperature):
    """Differentiable per-row implementation (index_select + log_softmax)."""
    out = {'primary': [], 'secondary': [], 'binary': [], 'p_phi_t': []}
    for s_row, t_row, m_row in zip(student, teacher, mask):
        a, b = s_row / temperature, t_row / temperature
        kls, logs_s, logs_t = [], [], []
        for g in (m_row.nonzero().flatten(), (~m_row).nonzero().flatten()):
            if g.numel() == 0:
                kls.append(a.sum() * 0)
                logs_s.append(None)
                logs_t.append(None)
                continue
            la = torch.log_softmax(a[g], 0)
            lb = torch.log_softmax(b[g], 0)
            kls.append((lb.exp() * (lb - la)).sum())
            logs_s.append(torch.logsumexp(a[g], 0) - torch.logsumexp(a, 0))
            logs_t.append(torch.logsumexp(b[g], 0) - torch.logsumexp(b, 0))
        binary = a.sum() * 0
        for ls, lt in zip(logs_s, logs_t):
            if lt is not None:
                binary = binary + lt.exp() * (lt - ls)
        out['primary'].append(kls[0])
        out['secondary'].append(kls[1])
        out['binary'].append(binary)
        p_phi = logs_t[0].exp() if logs_t[0] is not None else a.sum() * 0
        out['p_phi_t'].append(p_phi)
    return {k: torch.stack(v) for k, v in out.items()}


def _direct_k(logits, tau, temperature):
    """Eq. 3 by brute force: full sort, cumsum, first argmin."""
    p = torch.softmax(logits / temperature, dim=1)
    cum = p.sort(dim=1, descending=True)[0].cumsum(dim=1)
    return (cum - tau).abs().argmin(dim=1) + 1


def _authors_batch_k(logits, tau, step=100):
    """The authors' adaptive loop, literally: sum of the softmax over the
    batch, sorted, first grid index whose prefix sum reaches tau * B."""
    prob = torch.softmax(logits, dim=1).sum(dim=0)
    sorted_prob = prob.sort(descending=True)[0]
    for idx in range(1, sorted_prob.shape[0], step):
        if torch.sum(sorted_prob[:idx], dim=0) >= tau * logits.shape[0]:
            return idx
    return None


def _authors_mask(logits, labels, k):
    """Target scattered to a huge score, then the top-k of a full sort."""
    select = logits.scatter(1, labels.unsqueeze(1), 999999.)
    top = select.sort(dim=1, descending=True)[1][:, :k]
    return torch.zeros_like(logits).scatter(1, top, 1).bool()


def _authors_loss(student, teacher, hard, temperature, w_bin, w_hard,
                  w_nhard):
    """The authors' three terms (softmax with -1000 masking, sum / B, T^2);
    valid for moderate logits."""
    hard_f, nhard_f = hard.to(student.dtype), (~hard).to(student.dtype)
    batch, temp = student.shape[0], temperature

    def kl_sum(log_p, q):
        return (torch.where(q > 0, q * (q.log() - log_p), 0 * q)).sum()

    ps = torch.softmax(student / temp, 1)
    pt = torch.softmax(teacher / temp, 1)
    bs = torch.stack([(ps * hard_f).sum(1), (ps * nhard_f).sum(1)], 1)
    bt = torch.stack([(pt * hard_f).sum(1), (pt * nhard_f).sum(1)], 1)
    binary = kl_sum(bs.log(), bt) * temp**2 / batch
    hard_kd = kl_sum(
        torch.log_softmax(student / temp - 1000. * nhard_f, 1),
        torch.softmax(teacher / temp - 1000. * nhard_f, 1)) * temp**2 / batch
    nhard_kd = kl_sum(
        torch.log_softmax(student / temp - 1000. * hard_f, 1),
        torch.softmax(teacher / temp - 1000. * hard_f, 1)) * temp**2 / batch
    return w_bin * binary + w_hard * hard_kd + w_nhard * nhard_kd


def _logits(kind, batch, num_classes, gen, dtype=F64):
    if kind == 'flat':  # freshly initialised: cos ~ N(0, 1/sqrt(512))
        return 64 * torch.randn(batch, num_classes, generator=gen,
                                dtype=dtype) / math.sqrt(512)
    if kind == 'peaked':  # a few dominant classes
        z = 3 * torch.randn(batch, num_classes, generator=gen, dtype=dtype)
        z[:, :3] += 25
        return z
    if kind == 'mixed':  # rows of very different entropies
        z = torch.randn(batch, num_classes, generator=gen, dtype=dtype)
        scales = torch.linspace(0.5, 12, batch, dtype=dtype).unsqueeze(1)
        return z * scales
    raise ValueError(kind)


# ------------------------------------------------------------ eq. 5, 6, 9
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
        hand = _hand_terms(student[i].tolist(), teacher[i].tolist(), phi,
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
    slow = _slow_terms(s_slow, teacher, mask, temp)
    (weights[:, 0] * slow['primary'] + weights[:, 1] * slow['secondary'] +
     weights[:, 2] * slow['binary']).sum().backward()
    assert torch.allclose(s_fast.grad, s_slow.grad, atol=1e-12, rtol=1e-9)
    assert s_fast.grad.abs().max() > 1e-3  # not trivially zero


@pytest.mark.parametrize('lambda1,rank_by,num_classes',
                         [(8.0, 'student', 40), ('p_phi_t', 'student', 40),
                          (8.0, 'teacher', 6000)])
def test_module_gradient_matches_slow_implementation(lambda1, rank_by,
                                                     num_classes):
    gen = torch.Generator().manual_seed(3)
    batch = 6
    student = 5 * torch.randn(batch, num_classes, generator=gen, dtype=F64)
    teacher = 5 * torch.randn(batch, num_classes, generator=gen, dtype=F64)
    labels = torch.randint(num_classes, (batch, ), generator=gen)
    loss = GKDLoss(tau=0.8, lambda1=lambda1, lambda2=1.5, lambda3=0.3,
                   temperature=2.0, force_target=True, loss_weight=0.5,
                   rank_by=rank_by)
    s_fast = student.clone().requires_grad_(True)
    out = loss(s_fast, teacher, labels)
    out['loss'].backward()

    mask = loss.primary_mask(student, teacher, labels)
    s_slow = student.clone().requires_grad_(True)
    slow = _slow_terms(s_slow, teacher, mask, 2.0)
    lam1 = slow['p_phi_t'].detach() if lambda1 == 'p_phi_t' else lambda1
    expected = 0.5 * 4.0 * (lam1 * slow['primary'] + 1.5 * slow['binary'] +
                            0.3 * slow['secondary']).mean()
    expected.backward()
    assert out['loss'].item() == pytest.approx(expected.item(), rel=1e-10)
    assert torch.allclose(s_fast.grad, s_slow.grad, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize('temperature', [1.0, 4.0])
def test_natural_weights_and_tau_one_give_plain_kd(temperature):
    gen = torch.Generator().manual_seed(4)
    student = 64 * (torch.rand(8, 300, generator=gen, dtype=F64) * 2 - 1)
    teacher = 64 * (torch.rand(8, 300, generator=gen, dtype=F64) * 2 - 1)
    kd = KDLoss(temperature=temperature)(student, teacher)
    # eq. 9 with the natural weights: exact KD for any tau.
    for tau in (0.3, 0.93, 1.0):
        gkd = GKDLoss(tau=tau, lambda1='p_phi_t', lambda2=1.0,
                      lambda3='p_psi_t', temperature=temperature)
        assert gkd(student, teacher)['loss'].item() == pytest.approx(
            kd.item(), rel=1e-9)
    # tau = 1: Psi is empty, p_phi = 1, Binary-KD = 0, Primary-KD = KL.
    out = GKDLoss(tau=1.0, lambda1=1.0, lambda2=5.0,
                  temperature=temperature)(student, teacher)
    assert out['k_mean'].item() == 300 and out['k_std'].item() == 0
    assert out['p_phi_t'].item() == 1.0
    assert out['binary_kd'].item() == 0 and out['secondary_kd'].item() == 0
    assert out['loss'].item() == pytest.approx(kd.item(), rel=1e-9)


# ------------------------------------------------------------ eq. 2-3
@pytest.mark.parametrize('kind,num_classes', [('flat', 20000),
                                              ('peaked', 20000),
                                              ('mixed', 30000),
                                              ('mixed', 500)])
@pytest.mark.parametrize('temperature', [1.0, 4.0])
def test_per_sample_k_equals_direct_argmin(kind, num_classes, temperature):
    gen = torch.Generator().manual_seed(num_classes + int(temperature))
    logits = _logits(kind, 6, num_classes, gen)
    for tau in (0.01, 0.3, 0.5, 0.93, 0.999):
        k = select_primary_k(logits, tau, temperature)
        assert torch.equal(k, _direct_k(logits, tau, temperature)), tau


def test_primary_group_is_the_top_k_of_the_ranking_network():
    gen = torch.Generator().manual_seed(5)
    student = _logits('mixed', 6, 20000, gen)
    teacher = _logits('flat', 6, 20000, gen)
    for rank_by, ranking in (('student', student), ('teacher', teacher)):
        loss = GKDLoss(tau=0.9, rank_by=rank_by, temperature=2.0)
        mask = loss.primary_mask(student, teacher)
        k = _direct_k(ranking, 0.9, 2.0)
        order = ranking.argsort(dim=1, descending=True)
        for i in range(6):
            expected = torch.zeros(20000, dtype=torch.bool)
            expected[order[i, :k[i]]] = True
            assert torch.equal(mask[i], expected), (rank_by, i)
        out = loss(student, teacher)
        assert out['k_mean'].item() == pytest.approx(k.double().mean().item())


def test_primary_group_mask_counts_and_ties():
    gen = torch.Generator().manual_seed(6)
    logits = _logits('flat', 5, 30000, gen)
    k = torch.tensor([1, 64, 2500, 12000, 30000])
    mask = primary_group_mask(logits, k)
    order = logits.argsort(dim=1, descending=True)
    for i in range(5):
        assert mask[i].sum() == k[i]
        assert mask[i, order[i, :k[i]]].all()
    # Ties at the k-th value still give exactly k classes.
    tied = torch.zeros(2, 5000, dtype=F64)
    tied[:, :10] = 1.0
    mask = primary_group_mask(tied, torch.tensor([5, 3000]))
    assert mask.sum(1).tolist() == [5, 3000]
    assert mask[1, :10].all() and mask[0, 10:].sum() == 0


# ------------------------------------------------------------ authors' code
def test_batch_and_fixed_modes_match_authors_procedure():
    gen = torch.Generator().manual_seed(7)
    batch, num_classes = 8, 5000
    student = _logits('mixed', batch, num_classes, gen) / 4
    teacher = _logits('mixed', batch, num_classes, gen) / 4
    labels = torch.randint(num_classes, (batch, ), generator=gen)
    for tau in (0.5, 0.93):
        k_auth = _authors_batch_k(student, tau)
        assert k_auth is not None and k_auth > 1
        assert select_batch_k(student, tau) == k_auth
        loss = GKDLoss(tau=tau, k_mode='batch', force_target=True,
                       temperature=4.0, lambda1=8.0, lambda2=1.0)
        mask = loss.primary_mask(student, teacher, labels)
        expected = _authors_mask(student, labels, k_auth)
        assert torch.equal(mask, expected)
        value = loss(student, teacher, labels)['loss']
        ref = _authors_loss(student, teacher, expected, 4.0, 1.0, 8.0, 0.0)
        assert value.item() == pytest.approx(ref.item(), rel=1e-8)
    # rank_by='teacher' uses the teacher's batch-summed softmax and ranking.
    loss = GKDLoss(tau=0.93, k_mode='batch', rank_by='teacher',
                   force_target=True)
    expected = _authors_mask(teacher, labels, _authors_batch_k(teacher, 0.93))
    assert torch.equal(loss.primary_mask(student, teacher, labels), expected)

    for fixed_k in (1, 700, 10000):
        loss = GKDLoss(k_mode='fixed', fixed_k=fixed_k, force_target=True,
                       temperature=4.0, lambda1=8.0, lambda2=1.0)
        expected = _authors_mask(student, labels, min(fixed_k, num_classes))
        assert torch.equal(loss.primary_mask(student, teacher, labels),
                           expected)
        out = loss(student, teacher, labels)
        ref = _authors_loss(student, teacher, expected, 4.0, 1.0, 8.0, 0.0)
        assert out['loss'].item() == pytest.approx(ref.item(), rel=1e-8,
                                                   abs=1e-12)
        assert out['k_mean'].item() == min(fixed_k, num_classes)


def test_batch_k_grid_boundaries():
    # Uniform rows: the sorted batch mass after n classes is n / C * B, so
    # tau between two grid points pins the grid semantics exactly.
    logits = torch.zeros(4, 1000, dtype=F64)
    for tau, expected in ((0.1015, 201), (0.1005, 101), (0.0005, 1),
                          (0.9, 901)):
        assert _authors_batch_k(logits, tau) == expected
        assert select_batch_k(logits, tau) == expected
    # Beyond the last grid point (901) the authors' loop finds nothing.
    assert _authors_batch_k(logits, 0.95) is None
    assert select_batch_k(logits, 0.95) == 1000


def test_force_target_puts_gt_in_primary_group_keeping_its_size():
    gen = torch.Generator().manual_seed(8)
    student = _logits('mixed', 8, 3000, gen)
    teacher = _logits('mixed', 8, 3000, gen)
    order = student.argsort(dim=1, descending=True)
    labels = order[:, 2500].clone()  # far outside the primary groups
    labels[0] = order[0, 0]  # already in the group
    plain = GKDLoss(tau=0.7).primary_mask(student, teacher)
    forced = GKDLoss(tau=0.7, force_target=True).primary_mask(
        student, teacher, labels)
    k = _direct_k(student, 0.7, 1.0)
    assert torch.equal(plain.sum(1), k) and torch.equal(forced.sum(1), k)
    assert forced[torch.arange(8), labels].all()
    assert torch.equal(forced[0], plain[0])
    assert not plain[1:][torch.arange(7), labels[1:]].all()
    for i in range(1, 8):
        expected = plain[i].clone()
        if not expected[labels[i]]:
            expected[order[i, k[i] - 1]] = False  # the k-th ranked leaves
            expected[labels[i]] = True
        assert torch.equal(forced[i], expected)
    with pytest.raises(ValueError):
        GKDLoss(force_target=True)(student, teacher)


# ------------------------------------------------------------ numerics
@pytest.mark.parametrize('tau', [0.01, 0.5, 0.93, 0.999, 1.0])
def test_no_nan_or_inf_for_s64_logits(tau):
    gen = torch.Generator().manual_seed(9)
    batch, num_classes = 8, 3000
    labels = torch.randint(num_classes, (batch, ), generator=gen)
    rows = torch.arange(batch)
    uniform = 64 * (torch.rand(batch, num_classes, generator=gen) * 2 - 1)
    onehot = torch.full((batch, num_classes), -64.)
    onehot[rows, labels] = 64.
    margin = 64 * torch.randn(batch, num_classes, generator=gen) * 0.05
    margin[rows, labels] = 64 * (0.9 - 0.4)
    cases = [(uniform, uniform.roll(1, 1)), (onehot, onehot.roll(3, 1)),
             (onehot, onehot), (margin, onehot), (onehot, margin)]
    for mode, temp in (('per_sample', 1.0), ('per_sample', 4.0),
                       ('batch', 4.0), ('fixed', 1.0)):
        loss = GKDLoss(tau=tau, k_mode=mode, fixed_k=100, temperature=temp,
                       lambda3=0.5, force_target=mode != 'per_sample')
        for student, teacher in cases:
            s32 = student.clone().requires_grad_(True)
            out = loss(s32, teacher, labels)
            out['loss'].backward()
            assert all(torch.isfinite(v) for v in out.values())
            assert torch.isfinite(s32.grad).all()
    # float32 agrees with float64 on the same groups (one-hot rows have
    # ties, so the groups themselves are compared elsewhere).
    for student, teacher in cases:
        mask = GKDLoss(tau=tau).primary_mask(student, teacher)
        t32 = grouped_kl_terms(student, teacher, mask, 1.0)
        t64 = grouped_kl_terms(student.double(), teacher.double(), mask, 1.0)
        for a, b in zip(t32, t64):
            assert torch.allclose(a.double(), b, rtol=1e-4, atol=1e-4)


def test_tiny_group_shares_are_summed_directly():
    """A confident teacher puts ~1e-13 of its mass on Psi: Z_psi must not
    be taken as Z - Z_phi (float32 cancellation)."""
    gen = torch.Generator().manual_seed(13)
    student = 3 * torch.randn(4, 3000, generator=gen, dtype=F64)
    teacher = torch.randn(4, 3000, generator=gen, dtype=F64)
    teacher[:, :5] += 40.0
    mask = torch.zeros(4, 3000, dtype=torch.bool)
    mask[:, :5] = True
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
    gen = torch.Generator().manual_seed(14)
    student = 2 * torch.randn(3, 50, generator=gen, dtype=F64)
    teacher = torch.randn(3, 50, generator=gen, dtype=F64)
    teacher[:, :4] += 35.0
    mask = torch.zeros(3, 50, dtype=torch.bool)
    mask[:, :4] = True
    s_fast = student.clone().requires_grad_(True)
    terms = grouped_kl_terms(s_fast, teacher, mask, 1.0)
    (terms.primary_kd + terms.secondary_kd).sum().backward()
    s_slow = student.clone().requires_grad_(True)
    slow = _slow_terms(s_slow, teacher, mask, 1.0)
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
    hand = _hand_terms(student[0].tolist(), teacher[0].tolist(), {0}, 1.0)
    assert ref.secondary_kd[0].item() == pytest.approx(hand['secondary'],
                                                       rel=1e-9)
    assert terms.secondary_kd[0].item() == pytest.approx(hand['secondary'],
                                                         rel=1e-5)
    assert torch.isfinite(torch.stack(list(terms))).all()


# ------------------------------------------------------------ module API
def test_output_dict_and_build():
    gen = torch.Generator().manual_seed(10)
    student = torch.randn(4, 200, generator=gen).requires_grad_(True)
    teacher = torch.randn(4, 200, generator=gen)
    loss = MODELS.build(dict(type='GKDLoss', tau=0.9, lambda3=0.1))
    assert isinstance(loss, GKDLoss)
    out = loss(student, teacher)
    assert set(out) == {
        'loss', 'primary_kd', 'binary_kd', 'secondary_kd', 'k_mean', 'k_std',
        'p_phi_t'
    }
    assert out['loss'].requires_grad and out['loss'].dim() == 0
    for key, value in out.items():
        if key != 'loss':
            assert 'loss' not in key
            assert not value.requires_grad and value.dim() == 0
    out['loss'].backward(retain_graph=True)
    with pytest.raises(RuntimeError, match='consumes its buffers'):
        out['loss'].backward()
    for bad in (dict(tau=0.), dict(tau=1.5), dict(lambda1='x'),
                dict(k_mode='x'), dict(rank_by='x'), dict(temperature=0)):
        with pytest.raises(ValueError):
            GKDLoss(**bad)


def test_workspace_reuse_is_safe():
    """Buffers are only reused after the backward that needs them: two
    forwards before one backward (gradient accumulation) and repeated steps
    give the same gradients as fresh buffers."""
    gen = torch.Generator().manual_seed(12)
    inputs = [(8 * torch.randn(6, 5000, generator=gen),
               8 * torch.randn(6, 5000, generator=gen)) for _ in range(3)]
    pooled, fresh = GKDLoss(tau=0.9), GKDLoss(tau=0.9, reuse_buffers=False)

    def grads(loss, mode):
        student = [s.clone().requires_grad_(True) for s, _ in inputs]
        if mode == 'steps':  # forward, backward, forward, backward, ...
            for st, (_, t) in zip(student, inputs):
                loss(st, t)['loss'].backward()
        else:
            outs = [loss(st, t)['loss'] for st, (_, t) in zip(student, inputs)]
            if mode == 'accumulate':
                sum(outs).backward()
            else:
                for out in outs:
                    out.backward()
        return [st.grad for st in student]

    reference = grads(fresh, 'steps')
    for mode in ('accumulate', 'steps', 'separate', 'steps'):
        for a, b in zip(grads(pooled, mode), reference):
            assert torch.equal(a, b), mode
    with torch.no_grad():  # no-grad forwards hand their buffers back
        for _ in range(3):
            pooled(*inputs[0])
    assert len(pooled._workspace._free) <= pooled._workspace.capacity


def test_low_precision_inputs():
    gen = torch.Generator().manual_seed(11)
    student = torch.randn(4, 300, generator=gen) * 10
    teacher = torch.randn(4, 300, generator=gen) * 10
    s16, t16 = student.bfloat16(), teacher.bfloat16()
    s32 = s16.float().requires_grad_(True)
    ref = GKDLoss()(s32, t16.float())['loss']  # computed in float32
    ref.backward()
    s16.requires_grad_(True)
    out = GKDLoss()(s16, t16)['loss']
    out.backward()
    assert s16.grad.dtype == torch.bfloat16
    assert out.item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.allclose(s16.grad.float(), s32.grad, rtol=1e-2, atol=1e-4)

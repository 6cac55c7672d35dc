"""GKDLoss (eq. 11, :mod:`mmfacekd.models.losses.gkd.loss`) against slow
references (``refs``): per-row autograd, plain KD, the authors' procedures."""
import logging

import pytest
import torch

import mmfacekd.models.losses  # noqa: F401  (registers the losses)
from mmfacekd.models.losses import (
    GKDLoss,
    KDLoss,
    grouped_kl_terms,
    select_batch_k,
)
from mmfacekd.models.losses.gkd import regime as gkd_regime_module
from mmfacekd.registry import MODELS

from . import refs
from .refs import F64


@pytest.mark.parametrize('lambda1,rank_by,num_classes',
                         [(8.0, 'student', 40), ('p_phi_t', 'student', 40),
                          (8.0, 'teacher', 6000)])
def test_module_gradient_matches_slow_implementation(lambda1, rank_by,
                                                     num_classes, selection):
    gen = torch.Generator().manual_seed(3)
    batch = 6
    student = 5 * torch.randn(batch, num_classes, generator=gen, dtype=F64)
    teacher = 5 * torch.randn(batch, num_classes, generator=gen, dtype=F64)
    labels = torch.randint(num_classes, (batch, ), generator=gen)
    loss = GKDLoss(selection=selection,
                   tau=0.8,
                   lambda1=lambda1,
                   lambda2=1.5,
                   lambda3=0.3,
                   temperature=2.0,
                   force_target=True,
                   loss_weight=0.5,
                   rank_by=rank_by)
    s_fast = student.clone().requires_grad_(True)
    out = loss(s_fast, teacher, labels)
    out['loss'].backward()

    mask = loss.primary_mask(student, teacher, labels)
    s_slow = student.clone().requires_grad_(True)
    slow = refs.slow_terms(s_slow, teacher, mask, 2.0)
    lam1 = slow['p_phi_t'].detach() if lambda1 == 'p_phi_t' else lambda1
    expected = 0.5 * 4.0 * (lam1 * slow['primary'] + 1.5 * slow['binary'] +
                            0.3 * slow['secondary']).mean()
    expected.backward()
    assert out['loss'].item() == pytest.approx(expected.item(), rel=1e-10)
    assert torch.allclose(s_fast.grad, s_slow.grad, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize('temperature', [1.0, 4.0])
def test_natural_weights_and_tau_one_give_plain_kd(temperature, selection):
    gen = torch.Generator().manual_seed(4)
    student = 64 * (torch.rand(8, 300, generator=gen, dtype=F64) * 2 - 1)
    teacher = 64 * (torch.rand(8, 300, generator=gen, dtype=F64) * 2 - 1)
    kd = KDLoss(temperature=temperature)(student, teacher)
    # eq. 9 with the natural weights: exact KD for any tau.
    for tau in (0.3, 0.93, 1.0):
        gkd = GKDLoss(selection=selection,
                      tau=tau,
                      lambda1='p_phi_t',
                      lambda2=1.0,
                      lambda3='p_psi_t',
                      temperature=temperature)
        assert gkd(student, teacher)['loss'].item() == pytest.approx(kd.item(),
                                                                     rel=1e-9)
    # tau = 1: Psi is empty, p_phi = 1, Binary-KD = 0, Primary-KD = KL.
    out = GKDLoss(selection=selection,
                  tau=1.0,
                  lambda1=1.0,
                  lambda2=5.0,
                  temperature=temperature)(student, teacher)
    assert out['k_mean'].item() == 300 and out['k_std'].item() == 0
    assert out['p_phi_t'].item() == 1.0
    assert out['binary_kd'].item() == 0 and out['secondary_kd'].item() == 0
    assert out['loss'].item() == pytest.approx(kd.item(), rel=1e-9)


# ------------------------------------------------------------ authors' code
def test_batch_and_fixed_modes_match_authors_procedure(selection):
    gen = torch.Generator().manual_seed(7)
    batch, num_classes = 8, 5000
    student = refs.make_logits('mixed', batch, num_classes, gen) / 4
    teacher = refs.make_logits('mixed', batch, num_classes, gen) / 4
    labels = torch.randint(num_classes, (batch, ), generator=gen)
    for tau in (0.5, 0.93):
        k_auth = refs.authors_batch_k(student, tau)
        assert k_auth is not None and k_auth > 1
        assert select_batch_k(student, tau) == k_auth
        loss = GKDLoss(selection=selection,
                       tau=tau,
                       k_mode='batch',
                       force_target=True,
                       temperature=4.0,
                       lambda1=8.0,
                       lambda2=1.0)
        mask = loss.primary_mask(student, teacher, labels)
        expected = refs.authors_mask(student, labels, k_auth)
        assert torch.equal(mask, expected)
        value = loss(student, teacher, labels)['loss']
        ref = refs.authors_loss(student, teacher, expected, 4.0, 1.0, 8.0, 0.0)
        assert value.item() == pytest.approx(ref.item(), rel=1e-8)
    # rank_by='teacher' uses the teacher's batch-summed softmax and ranking.
    loss = GKDLoss(selection=selection,
                   tau=0.93,
                   k_mode='batch',
                   rank_by='teacher',
                   force_target=True)
    expected = refs.authors_mask(teacher, labels,
                                 refs.authors_batch_k(teacher, 0.93))
    assert torch.equal(loss.primary_mask(student, teacher, labels), expected)

    for fixed_k in (1, 700, 10000):
        loss = GKDLoss(selection=selection,
                       k_mode='fixed',
                       fixed_k=fixed_k,
                       force_target=True,
                       temperature=4.0,
                       lambda1=8.0,
                       lambda2=1.0)
        expected = refs.authors_mask(student, labels,
                                     min(fixed_k, num_classes))
        assert torch.equal(loss.primary_mask(student, teacher, labels),
                           expected)
        out = loss(student, teacher, labels)
        ref = refs.authors_loss(student, teacher, expected, 4.0, 1.0, 8.0, 0.0)
        assert out['loss'].item() == pytest.approx(ref.item(),
                                                   rel=1e-8,
                                                   abs=1e-12)
        assert out['k_mean'].item() == min(fixed_k, num_classes)


def test_force_target_puts_gt_in_primary_group_keeping_its_size(selection):
    gen = torch.Generator().manual_seed(8)
    student = refs.make_logits('mixed', 8, 3000, gen)
    teacher = refs.make_logits('mixed', 8, 3000, gen)
    order = student.argsort(dim=1, descending=True)
    labels = order[:, 2500].clone()  # far outside the primary groups
    labels[0] = order[0, 0]  # already in the group
    plain = GKDLoss(selection=selection,
                    tau=0.7).primary_mask(student, teacher)
    forced = GKDLoss(selection=selection, tau=0.7,
                     force_target=True).primary_mask(student, teacher, labels)
    k = refs.direct_k(student, 0.7, 1.0)
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
        GKDLoss(selection=selection, force_target=True)(student, teacher)


# ------------------------------------------------------------ numerics
@pytest.mark.parametrize('tau', [0.01, 0.5, 0.93, 0.999, 1.0])
def test_no_nan_or_inf_for_s64_logits(tau, selection):
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
        loss = GKDLoss(selection=selection,
                       tau=tau,
                       k_mode=mode,
                       fixed_k=100,
                       temperature=temp,
                       lambda3=0.5,
                       force_target=mode != 'per_sample')
        for student, teacher in cases:
            s32 = student.clone().requires_grad_(True)
            out = loss(s32, teacher, labels)
            out['loss'].backward()
            assert all(torch.isfinite(v) for v in out.values())
            assert torch.isfinite(s32.grad).all()
    # float32 agrees with float64 on the same groups (one-hot rows have
    # ties, so the groups themselves are compared elsewhere).
    for student, teacher in cases:
        mask = GKDLoss(selection=selection,
                       tau=tau).primary_mask(student, teacher)
        t32 = grouped_kl_terms(student, teacher, mask, 1.0)
        t64 = grouped_kl_terms(student.double(), teacher.double(), mask, 1.0)
        for a, b in zip(t32, t64):
            assert torch.allclose(a.double(), b, rtol=1e-4, atol=1e-4)


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
        'k_min', 'k_max', 'p_phi_t'
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


def test_k_min_max_and_shape_check():
    gen = torch.Generator().manual_seed(15)
    student = refs.make_logits('mixed', 7, 600, gen)
    teacher = refs.make_logits('mixed', 7, 600, gen)
    out = GKDLoss(tau=0.8)(student, teacher)
    k = refs.direct_k(student, 0.8, 1.0)
    assert out['k_min'].item() == k.min().item()
    assert out['k_max'].item() == k.max().item()
    assert out['k_min'] < out['k_max']
    for bad in (teacher[:, :-1], teacher[0]):
        with pytest.raises(ValueError, match='same'):
            GKDLoss()(student, bad)


def test_loss_never_changes_the_thread_count(monkeypatch, selection):
    """No process-wide state: torch.set_num_threads is never called."""
    gen = torch.Generator().manual_seed(16)
    student = refs.make_logits('flat', 8, 30000, gen).float()
    teacher = refs.make_logits('flat', 8, 30000, gen).float()
    calls = []
    monkeypatch.setattr(torch, 'set_num_threads', calls.append)
    leaf = student.requires_grad_(True)
    for kw in (dict(), dict(k_mode='fixed', fixed_k=3000)):
        GKDLoss(selection=selection, **kw)(leaf, teacher)['loss'].backward()
    assert calls == []


def _trained_logits(gen, batch=4, num_classes=20000, scale=64.0):
    """s * cos with the target cosine ~0.7 and the others ~N(0, 0.05)."""
    cos = 0.05 * torch.randn(batch, num_classes, generator=gen)
    labels = torch.randint(num_classes, (batch, ), generator=gen)
    cos[torch.arange(batch), labels] = 0.7
    return scale * cos, labels


def _count_warnings(monkeypatch):
    records = []

    def fake_print_log(msg, logger=None, level=logging.INFO):
        records.append((msg, logger, level))

    monkeypatch.setattr(gkd_regime_module, 'print_log', fake_print_log)
    return records


def test_degenerate_regime_warns_once_at_t1_not_at_t4(monkeypatch):
    gen = torch.Generator().manual_seed(17)
    student, labels = _trained_logits(gen)
    teacher = student + torch.randn(student.shape, generator=gen)
    records = _count_warnings(monkeypatch)
    k1 = refs.direct_k(student.double(), 0.93, 1.0).double().mean()
    k4 = refs.direct_k(student.double(), 0.93, 4.0).double().mean()
    assert k1 <= 2 < k4  # the two regimes of docs/papers.md §1

    hot = GKDLoss(temperature=4.0)
    cold = GKDLoss(temperature=1.0)
    leaf = student.clone().requires_grad_(True)
    for _ in range(99):
        cold(leaf, teacher)
        hot(leaf, teacher)
    assert records == []
    cold(leaf, teacher)
    assert len(records) == 1
    msg, logger, level = records[0]
    assert logger == 'current' and level == logging.WARNING
    assert 'temperature=4' in msg and 'model.distill_losses' in msg
    for _ in range(201):
        cold(leaf, teacher)
    for _ in range(101):
        hot(leaf, teacher)
    assert len(records) == 1  # once, and never at T = 4


def test_degenerate_regime_counts_only_training_calls(monkeypatch):
    gen = torch.Generator().manual_seed(18)
    student, _ = _trained_logits(gen, batch=4, num_classes=3000)
    records = _count_warnings(monkeypatch)
    loss = GKDLoss(degenerate_warn_iters=10)
    with torch.no_grad():
        for _ in range(30):
            loss(student, student)
    loss.eval()
    for _ in range(30):
        loss(student, student)
    assert records == []
    loss.train()
    for _ in range(9):
        loss(student, student)
    loss(student * 0, student)  # k = 0.93 C: the run restarts
    for _ in range(9):
        loss(student, student)
    assert records == []
    for _ in range(11):
        loss(student, student)
    assert len(records) == 1
    off = GKDLoss(degenerate_warn_iters=0)
    for _ in range(30):
        off(student, student)
    assert len(records) == 1
    with pytest.raises(ValueError):
        GKDLoss(degenerate_warn_iters=-1)

"""EKDLoss against a hand computation, its anchor buffers (momentum, state
dict, distiller checkpoints), gradients, and the 2-process global batch."""
import math

import pytest
import torch
import torch.distributed as dist
from mmpretrain.structures import DataSample

import mmfacekd.models.losses  # noqa: F401  (registers the losses)
from mmfacekd.models.losses import EKDLoss
from mmfacekd.registry import MODELS

pytestmark = pytest.mark.usefixtures('single_thread')


# --------------------------------------------------------------------------
# independent hand computation (plain Python loops)
# --------------------------------------------------------------------------
def _unit(row):
    n = math.sqrt(sum(v * v for v in row))
    return [v / n for v in row]


def _pairs(emb, labels):
    """(similarity, is_positive) of every pair i < j, row-major order."""
    rows = [_unit(r) for r in emb.tolist()]
    out = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            sim = sum(a * b for a, b in zip(rows[i], rows[j]))
            out.append((sim, labels[i] == labels[j]))
    return out


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else \
        math.exp(x) / (1.0 + math.exp(x))


def _rank(x, anchors, t):
    return sum(_sigmoid((x - a) / t) for a in anchors)


def _mse(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b)) / len(a) if a else 0.0


class HandEKD:
    """The EKD recipe of docs/papers.md §3, step by step."""

    def __init__(self, fprs, momentum=0.01, t=0.01, hard=2000,
                 wp=0.02, wn=0.01):
        self.div = [round(1 / f) for f in fprs]
        self.m, self.t, self.hard, self.wp, self.wn = momentum, t, hard, wp, wn
        self.a_s = [0.0] * len(fprs)
        self.a_t = [0.0] * len(fprs)

    def _thresholds(self, negs):
        srt = sorted(negs, reverse=True)
        return [srt[min(len(srt) // a, len(srt) - 1)] for a in self.div]

    def step(self, s_emb, t_emb, labels, train=True):
        labels = list(labels)
        ps, pt = _pairs(s_emb, labels), _pairs(t_emb, labels)
        s_neg = [s for s, p in ps if not p]
        t_neg = [t for t, p in pt if not p]
        if train and s_neg:
            thr_s, thr_t = self._thresholds(s_neg), self._thresholds(t_neg)
            # anchors are float32 buffers
            f32 = lambda v: torch.tensor(v, dtype=torch.float32).item()  # noqa
            self.a_s = [f32((1 - self.m) * a + self.m * v)
                        for a, v in zip(self.a_s, thr_s)]
            self.a_t = [f32((1 - self.m) * a + self.m * v)
                        for a, v in zip(self.a_t, thr_t)]
        pos_s = [_rank(s, self.a_s, self.t) for s, p in ps if p]
        pos_t = [_rank(t, self.a_t, self.t) for t, p in pt if p]
        # critical negatives: the `hard` largest student similarities
        order = sorted(range(len(s_neg)), key=lambda k: -s_neg[k])
        crit = order[:self.hard]
        neg_s = [_rank(s_neg[k], self.a_s, self.t) for k in crit]
        neg_t = [_rank(t_neg[k], self.a_t, self.t) for k in crit]
        return self.wp * _mse(pos_s, pos_t) + self.wn * _mse(neg_s, neg_t)


def _batch(seed, n=10, dim=6, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(n, dim, generator=gen, dtype=dtype)
    t = s + 0.5 * torch.randn(n, dim, generator=gen, dtype=dtype)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 4, 5][:n])
    return s, t, labels


def test_matches_hand_computation_over_steps():
    # small FPRs so that the anchor index moves: 36 negatives // a
    fprs = (0.5, 0.25, 0.1, 1e-2, 1e-4)
    loss = EKDLoss(fprs=fprs, num_hard_negatives=7, log_fpr=0.1)
    hand = HandEKD(fprs, hard=7)
    loss.train()
    for step in range(3):
        s, t, y = _batch(step)
        out = loss(s, t, y)
        ref = hand.step(s, t, y.tolist())
        assert out['loss'].item() == pytest.approx(ref, rel=1e-4, abs=1e-7)
        torch.testing.assert_close(loss.student_anchors,
                                   torch.tensor(hand.a_s), rtol=1e-5,
                                   atol=1e-6)
        torch.testing.assert_close(loss.teacher_anchors,
                                   torch.tensor(hand.a_t), rtol=1e-5,
                                   atol=1e-6)
        assert out['num_pos'].item() == 5 and out['num_neg'].item() == 40
        assert out['num_hard_neg'].item() == 7
        assert out['student_anchor'].item() == pytest.approx(hand.a_s[2])
    # eval mode: the anchors are frozen, the loss uses them as they are
    loss.eval()
    before = loss.student_anchors.clone()
    s, t, y = _batch(9)
    assert loss(s, t, y)['loss'].item() == pytest.approx(
        hand.step(s, t, y.tolist(), train=False), rel=1e-4, abs=1e-7)
    assert torch.equal(loss.student_anchors, before)


def test_paper_defaults_and_registry():
    loss = MODELS.build(dict(type='EKDLoss'))
    assert loss.divisors == (10, 100, 1000, 10000, 100000, 1000000)
    assert (loss.momentum, loss.temperature, loss.num_hard_negatives,
            loss.pos_weight, loss.neg_weight, loss.loss_weight,
            loss.gather) == (0.01, 0.01, 2000, 0.02, 0.01, 1.0, True)
    # default FPRs: hand computation with every anchor at index 0 or n // 10
    hand = HandEKD((1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6))
    s, t, y = _batch(3)
    assert loss(s, t, y)['loss'].item() == pytest.approx(
        hand.step(s, t, y.tolist()), rel=1e-4, abs=1e-7)
    assert loss.log_index == 3  # the 1e-4 anchor is logged
    assert EKDLoss(fprs=(0.1, 0.01), log_fpr=1e-4).log_index == 1


def test_momentum_buffers_and_state_dict():
    loss = EKDLoss(fprs=(0.1, 0.01))
    assert torch.equal(loss.student_anchors, torch.zeros(2))
    s, t, y = _batch(0)
    loss(s, t, y)
    a1 = loss.student_anchors.clone()
    loss(*_batch(1))
    a2 = loss.student_anchors.clone()
    hand = HandEKD((0.1, 0.01))
    hand.step(s, t, y.tolist())
    thr1 = hand._thresholds([v for v, p in _pairs(s, y.tolist()) if not p])
    torch.testing.assert_close(a1, 0.01 * torch.tensor(thr1))
    s2, _, y2 = _batch(1)
    thr2 = hand._thresholds([v for v, p in _pairs(s2, y2.tolist()) if not p])
    torch.testing.assert_close(a2, 0.99 * a1 + 0.01 * torch.tensor(thr2))
    state = loss.state_dict()
    assert set(state) == {'student_anchors', 'teacher_anchors'}
    fresh = EKDLoss(fprs=(0.1, 0.01))
    fresh.load_state_dict(state)
    assert torch.equal(fresh.student_anchors, a2)
    assert torch.equal(fresh.teacher_anchors, loss.teacher_anchors)


def test_identical_networks_give_zero():
    # both anchor sets start at 0 and see the same thresholds every step,
    # so they stay equal and so do the ranks of every pair
    loss = EKDLoss()
    for step in range(4):
        s, _, y = _batch(step)
        out = loss(s, s.clone(), y)
        assert out['loss'].item() == 0.0
    assert torch.equal(loss.student_anchors, loss.teacher_anchors)
    assert (loss.student_anchors != 0).all()


def test_no_positive_or_negative_pairs():
    loss = EKDLoss(fprs=(0.1, 0.01))
    s, t, _ = _batch(0)
    s.requires_grad_()
    out = loss(s, t, torch.arange(10))  # all identities distinct
    assert out['num_pos'].item() == 0 and out['pos_rank_mse'].item() == 0
    assert out['neg_rank_mse'].item() > 0
    out['loss'].backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    anchors = loss.student_anchors.clone()
    s.grad = None
    out = loss(s, t, torch.zeros(10))  # one identity: no negatives
    assert out['num_neg'].item() == 0 and out['num_hard_neg'].item() == 0
    assert torch.equal(loss.student_anchors, anchors)  # no update
    out['loss'].backward()
    assert torch.isfinite(s.grad).all()


def test_gradcheck_double_and_teacher_detached():
    loss = EKDLoss(fprs=(0.5, 0.2, 0.1), num_hard_negatives=12)
    s, t, y = _batch(5, dtype=torch.float64)
    loss(s, t, y)  # one training step sets non-trivial anchors
    for _ in range(200):
        loss(s, t, y)
    loss.eval()  # frozen anchors: forward is a pure function of s
    s = s.clone().requires_grad_()
    t = t.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: loss(x, t.detach(), y)['loss'], (s, ), eps=1e-6,
        atol=1e-6)
    loss(s, t, y)['loss'].backward()
    assert t.grad is None and s.grad.abs().sum() > 0


# --------------------------------------------------------------------------
# the distiller keeps the anchors in its state dict / checkpoints
# --------------------------------------------------------------------------
@pytest.fixture
def build_distiller(tiny_recognizer):
    """``build(ckpt, **kw)``: an MBF-from-R18 FaceDistiller with EKD."""
    return lambda ckpt, **kw: MODELS.build(dict(
        type='FaceDistiller', student=tiny_recognizer('mbf'),
        teacher=tiny_recognizer('r18'), teacher_ckpt=ckpt,
        distill_losses=dict(ekd=dict(
            type='EKDLoss', inputs=dict(student_embedding='student.embedding',
                                        teacher_embedding='teacher.embedding',
                                        gt_label='gt_label'))), **kw))


def test_distiller_checkpoint_keeps_anchors_and_cls_on_random_part(
        tmp_path, tiny_recognizer, build_distiller):
    torch.manual_seed(0)
    teacher = MODELS.build(tiny_recognizer('r18'))
    ckpt = str(tmp_path / 't.pth')
    torch.save(dict(state_dict=teacher.state_dict()), ckpt)
    model = build_distiller(ckpt)
    model.train()
    x = torch.randn(8, 3, 32, 32)
    # the P×K sampler's flag: the random part (first 4) gets the CE
    samples = [DataSample(metainfo=dict(with_cls_loss=i < 4)).set_gt_label(
        i % 4) for i in range(8)]
    losses = model.loss(x, samples)
    assert losses['distill.ekd.num_pos'].item() == 4  # 4 ids x 2 images
    anchors = model.distill_losses.ekd.student_anchors.clone()
    assert (anchors != 0).any()
    state = model.state_dict()
    assert 'distill_losses.ekd.student_anchors' in state
    assert 'distill_losses.ekd.teacher_anchors' in state
    torch.save(dict(state_dict=state), tmp_path / 'd.pth')
    fresh = build_distiller(ckpt)
    assert not fresh.distill_losses.ekd.student_anchors.any()
    fresh.load_state_dict(torch.load(tmp_path / 'd.pth',
                                     weights_only=True)['state_dict'])
    assert torch.equal(fresh.distill_losses.ekd.student_anchors, anchors)

    # with_cls_loss: CE (and accuracy) on the 4 flagged samples only
    model.eval()  # BN in eval so that the batch composition does not matter
    with torch.no_grad():
        losses = model.loss(x, samples)
        emb = model.student.extract_feat(x[:4])
        gt = torch.arange(4)
        ref = model.student.head.loss_by_logits(
            model.student.head.get_logits(emb, gt), gt)
    torch.testing.assert_close(losses['student.loss_cls'], ref['loss_cls'])
    torch.testing.assert_close(losses['student.accuracy'], ref['accuracy'])


# --------------------------------------------------------------------------
# 2 gloo processes: gathered global batch == one process on the whole batch
# --------------------------------------------------------------------------
SPLIT = 5  # rank 0 holds 5 samples, rank 1 holds 7 (uneven shards)


def _global_batch(step):
    gen = torch.Generator().manual_seed(100 + step)
    x = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    t = torch.randn(12, 6, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 3, 1, 4, 2, 0, 5, 3, 6])
    return x, t, y


def _weight():
    return torch.linspace(-1, 1, 20, dtype=torch.float64).reshape(5, 4)


def _run_steps(loss, shard):
    """Two training steps; returns losses and the weight grad of each."""
    out = []
    for step in range(2):
        x, t, y = _global_batch(step)
        x, t, y = x[shard], t[shard], y[shard]
        weight = _weight().requires_grad_()
        value = loss(x @ weight, t, y)['loss']
        value.backward()
        out.append((value.detach(), weight.grad))
    return out


def _rank_steps(rank, world):
    loss = EKDLoss(fprs=(0.2, 0.1, 0.01), num_hard_negatives=9)
    shard = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
    res = []
    for value, grad in _run_steps(loss, shard):
        grad = grad.clone()
        dist.all_reduce(grad)  # what DDP does: average over the ranks
        res.append((value, grad / world))
    return dict(res=res, anchors=loss.state_dict())


def test_two_process_gather_matches_concatenated_batch(run_gloo):
    results = run_gloo(_rank_steps)
    loss = EKDLoss(fprs=(0.2, 0.1, 0.01), num_hard_negatives=9)
    ref = _run_steps(loss, slice(None))
    for r in results:
        for (value, grad), (ref_value, ref_grad) in zip(r['res'], ref):
            torch.testing.assert_close(value, ref_value)
            torch.testing.assert_close(grad, ref_grad)
        for k, v in loss.state_dict().items():
            torch.testing.assert_close(r['anchors'][k], v)

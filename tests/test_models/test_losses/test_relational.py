"""Relational baselines (RKD, SP, CCKD, DarkRank, triplet distillation)
against hand computations with plain loops, gradcheck, and a 2-process gloo
run of the gathered global-batch loss."""
import itertools
import math

import pytest
import torch
import torch.distributed as dist

from mmfacekd.models.losses import (
    CCKDLoss,
    DarkRankLoss,
    MarginDistillationLoss,
    RKDLoss,
    SPLoss,
    TripletDistillationLoss,
)
from mmfacekd.registry import MODELS

F64 = torch.float64
pytestmark = pytest.mark.usefixtures('single_thread')


def _pair(b=5, ds=3, dt=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(b, ds, generator=gen, dtype=F64),
            torch.randn(b, dt, generator=gen, dtype=F64))


# ------------------------------------------------------------ plain helpers
def _rows(x):
    return [list(map(float, r)) for r in x.tolist()]


def _norm(v):
    n = math.sqrt(sum(a * a for a in v))
    return [a / n for a in v]


def _dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def _dist(u, v):
    return math.sqrt(sum((a - b)**2 for a, b in zip(u, v)))


def _huber(x):
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


# -------------------------------------------------------------------- RKD
def _hand_rkd(s, t, wd=25.0, wa=50.0):
    s, t = _rows(s), _rows(t)
    n = len(s)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    mu_s = sum(_dist(s[i], s[j]) for i, j in pairs) / len(pairs)
    mu_t = sum(_dist(t[i], t[j]) for i, j in pairs) / len(pairs)
    dist_term = sum(_huber(_dist(s[i], s[j]) / mu_s - _dist(t[i], t[j]) / mu_t)
                    for i, j in pairs) / n**2

    def cos_angle(x, i, j, k):  # angle at vertex j
        e1 = _norm([a - b for a, b in zip(x[i], x[j])])
        e2 = _norm([a - b for a, b in zip(x[k], x[j])])
        return _dot(e1, e2)

    angle_term = sum(_huber(cos_angle(s, i, j, k) - cos_angle(t, i, j, k))
                     for i, j, k in itertools.permutations(range(n), 3)) / n**3
    return wd * dist_term + wa * angle_term, dist_term, angle_term


def test_rkd_matches_hand_computation():
    s, t = _pair(6, 3, 5)
    loss = MODELS.build(dict(type='RKDLoss', loss_weight=0.5))
    out = loss(s, t)
    total, d, a = _hand_rkd(s, t)
    assert out['distance'].item() == pytest.approx(d, rel=1e-10)
    assert out['angle'].item() == pytest.approx(a, rel=1e-10)
    assert out['loss'].item() == pytest.approx(0.5 * total, rel=1e-10)
    # normalize=True is the same on the L2-normalized rows
    norm = RKDLoss(normalize=True)(s, t)['loss']
    ref = _hand_rkd(torch.nn.functional.normalize(s),
                    torch.nn.functional.normalize(t))[0]
    assert norm.item() == pytest.approx(ref, rel=1e-10)
    # large distances: the |x| - 0.5 branch of the Huber loss
    big = RKDLoss()(s * torch.tensor([[10.0, 1.0, 1.0]], dtype=F64), t)
    ref = _hand_rkd(s * torch.tensor([[10.0, 1.0, 1.0]], dtype=F64), t)[0]
    assert big['loss'].item() == pytest.approx(ref, rel=1e-10)


def test_rkd_chunked_angle_equals_one_block_and_gradcheck():
    s, t = _pair(7, 4, 3, seed=1)
    one = RKDLoss(angle_chunk=None)
    chunked = RKDLoss(angle_chunk=2)
    x1 = s.clone().requires_grad_()
    x2 = s.clone().requires_grad_()
    v1, v2 = one(x1, t)['loss'], chunked(x2, t)['loss']
    v1.backward()
    v2.backward()  # checkpointed chunks
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(x1.grad, x2.grad)
    x = s.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: chunked(a, t)['loss'], (x, ))
    tt = t.clone().requires_grad_()
    one(x, tt)['loss'].backward()
    assert tt.grad is None


def test_rkd_identical_is_zero_and_small_batches():
    s, _ = _pair(5, 3, 3)
    out = RKDLoss()(s, s.clone())
    assert out['loss'].abs().item() < 1e-12
    # scale-invariant: a scaled teacher gives the same relations
    assert RKDLoss()(s, 3 * s)['loss'].abs().item() < 1e-12
    x = s[:2].clone().requires_grad_()
    out = RKDLoss()(x, s[:2])  # 2 samples: no triplet, angle term 0
    assert out['angle'].item() == 0
    out['loss'].backward()
    assert torch.isfinite(x.grad).all()
    assert RKDLoss()(s[:1], s[:1])['loss'].item() == 0


# --------------------------------------------------------------------- SP
def _hand_sp(s, t, normalize_features=False, normalize_rows=True):
    def sim(x):
        x = _rows(x.flatten(1))
        if normalize_features:
            x = [_norm(r) for r in x]
        g = [[_dot(a, b) for b in x] for a in x]
        if normalize_rows:
            g = [_norm(r) for r in g]
        return g
    gs, gt = sim(s), sim(t)
    n = len(gs)
    return sum((gs[i][j] - gt[i][j])**2
               for i in range(n) for j in range(n)) / n**2


def test_sp_matches_hand_computation():
    gen = torch.Generator().manual_seed(3)
    s = torch.randn(5, 2, 3, generator=gen, dtype=F64)  # flattened per sample
    t = torch.randn(5, 7, generator=gen, dtype=F64)
    # default: the face-recognition form (cosine matrix, rows as they are,
    # gamma = 1)
    out = MODELS.build(dict(type='SPLoss'))(s, t)
    face = _hand_sp(s, t, normalize_features=True, normalize_rows=False)
    assert out['sq_diff'].item() == pytest.approx(face, rel=1e-10)
    assert out['loss'].item() == pytest.approx(face, rel=1e-10)
    # the paper's CIFAR form: row-normalized Gram matrix of the raw features
    gram = SPLoss(normalize_features=False, normalize_rows=True,
                  loss_weight=3000.0)(s, t)
    assert gram['loss'].item() == pytest.approx(3000 * _hand_sp(s, t),
                                                rel=1e-10)
    assert SPLoss()(t, t.clone())['loss'].abs().item() < 1e-12


def test_sp_gradcheck_teacher_detached():
    s, t = _pair(4, 3, 5, seed=4)
    loss = SPLoss(loss_weight=1.0)
    x = s.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: loss(a, t)['loss'], (x, ))
    gram = SPLoss(normalize_features=False, normalize_rows=True)
    assert torch.autograd.gradcheck(lambda a: gram(a, t)['loss'], (x, ))
    tt = t.clone().requires_grad_()
    loss(x, tt)['loss'].backward()
    assert tt.grad is None


# ------------------------------------------------------------------- CCKD
def _hand_cckd(s, t, gamma=0.4, order=2):
    def corr(x):
        x = [_norm(r) for r in _rows(x)]
        return [[sum(math.exp(-2 * gamma) * (2 * gamma)**p / math.factorial(p)
                     * _dot(a, b)**p for p in range(order + 1)) for b in x]
                for a in x]
    cs, ct = corr(s), corr(t)
    n = len(cs)
    return sum((cs[i][j] - ct[i][j])**2
               for i in range(n) for j in range(n)) / n**2


def test_cckd_matches_hand_computation_and_rbf():
    s, t = _pair(5, 4, 6, seed=5)
    out = MODELS.build(dict(type='CCKDLoss', loss_weight=2.0))(s, t)
    assert out['loss'].item() == pytest.approx(2 * _hand_cckd(s, t),
                                               rel=1e-10)
    assert CCKDLoss(order=3)(s, t)['loss'].item() == pytest.approx(
        _hand_cckd(s, t, order=3), rel=1e-10)
    assert CCKDLoss()(s, s.clone())['loss'].abs().item() < 1e-12
    # a high order converges to the Gaussian RBF of the normalized rows
    from mmfacekd.models.losses import taylor_rbf_correlation
    f = torch.nn.functional.normalize(s)
    rbf = torch.exp(-0.4 * torch.cdist(f, f)**2)
    torch.testing.assert_close(taylor_rbf_correlation(s, 0.4, 20), rbf)


def _hand_kd(zs, zt, temp):
    """T^2 * mean over the batch of KL(softmax(zt/T) || softmax(zs/T))."""
    def softmax(z):
        e = [math.exp(v / temp) for v in z]
        return [v / sum(e) for v in e]
    total = 0.0
    for a, b in zip(_rows(zs), _rows(zt)):
        ps, pt = softmax(a), softmax(b)
        total += sum(q * math.log(q / p) for p, q in zip(ps, pt))
    return temp * temp * total / zs.size(0)


def test_cckd_instance_kd_term_matches_hand_computation():
    s, t = _pair(5, 4, 6, seed=7)
    gen = torch.Generator().manual_seed(8)
    zs = torch.randn(5, 7, generator=gen, dtype=F64)
    zt = 3 * torch.randn(5, 7, generator=gen, dtype=F64)
    loss = MODELS.build(dict(type='CCKDLoss', loss_weight=2.0,
                             kd_weight=0.7, temperature=3.0))
    out = loss(s, t, zs, zt)
    cc, kd = _hand_cckd(s, t), _hand_kd(zs, zt, 3.0)
    assert out['mse'].item() == pytest.approx(cc, rel=1e-10)
    assert out['kd'].item() == pytest.approx(kd, rel=1e-10)
    assert out['loss'].item() == pytest.approx(2 * cc + 0.7 * kd, rel=1e-10)
    # kd_weight=0 (default): the correlation term alone, logits ignored
    plain = CCKDLoss(loss_weight=2.0)(s, t, zs, zt)
    assert set(plain) == {'loss', 'mse'}
    assert plain['loss'].item() == pytest.approx(2 * cc, rel=1e-10)
    with pytest.raises(ValueError, match='student_logits'):
        loss(s, t)
    x = zs.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: loss(s, t, a, zt)['loss'],
                                    (x, ))


def test_cckd_gradcheck():
    s, t = _pair(4, 3, 3, seed=6)
    loss = CCKDLoss()
    x = s.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: loss(a, t)['loss'], (x, ))


# --------------------------------------------------------------- DarkRank
def _hand_darkrank(s, t, alpha=3.0, beta=3.0, length=3, normalize=True):
    s, t = _rows(s), _rows(t)
    if normalize:
        s, t = [_norm(r) for r in s], [_norm(r) for r in t]
    n = len(s)
    total = 0.0
    for q in range(n):
        cands = [i for i in range(n) if i != q]
        # teacher ranking: descending score = ascending distance
        ranked = sorted(cands, key=lambda i: _dist(t[q], t[i]))[:length]
        scores = [-alpha * _dist(s[q], s[i])**beta for i in ranked]
        for j in range(len(scores)):
            tail = math.log(sum(math.exp(v) for v in scores[j:]))
            total -= scores[j] - tail
    return total / n


@pytest.mark.parametrize('normalize,length', [(True, 3), (False, 2),
                                              (True, 10)])
def test_darkrank_matches_hand_computation(normalize, length):
    s, t = _pair(6, 3, 4, seed=7)
    loss = MODELS.build(dict(type='DarkRankLoss', list_length=length,
                             normalize=normalize, loss_weight=0.5))
    out = loss(s, t)
    ref = _hand_darkrank(s, t, length=min(length, 5), normalize=normalize)
    assert out['loss'].item() == pytest.approx(0.5 * ref, rel=1e-10)


def test_darkrank_identical_order_is_most_likely_and_gradcheck():
    s, t = _pair(6, 3, 3, seed=8)
    loss = DarkRankLoss()
    same = loss(t, t.clone())
    # the student's nearest neighbour is the teacher's for every query
    assert same['top1_agreement'].item() == 1.0
    assert same['loss'].item() == pytest.approx(_hand_darkrank(t, t),
                                                rel=1e-10)
    x = s.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: loss(a, t)['loss'], (x, ))
    tt = t.clone().requires_grad_()
    loss(x, tt)['loss'].backward()
    assert tt.grad is None


# ------------------------------------------------------ triplet distillation
def _hand_triplet(s, t, labels, m_min=0.2, m_max=0.5, metric='squared_l2',
                  mining='all'):
    s = [_norm(r) for r in _rows(s)]
    t = [_norm(r) for r in _rows(t)]
    y = labels.tolist()
    n = len(y)

    def d(x, i, j):
        c = _dot(x[i], x[j])
        if metric == 'squared_l2':
            return max(2 - 2 * c, 0.0)
        return math.acos(min(max(c, -1 + 1e-7), 1 - 1e-7))

    if mining == 'all':
        trips = [(a, p, q) for a in range(n) for p in range(n)
                 for q in range(n) if a != p and y[a] == y[p] >= 0
                 and y[q] != y[a] and y[q] >= 0]
    else:
        trips = []
        for a in range(n):
            pos = [p for p in range(n) if p != a and y[p] == y[a] >= 0]
            neg = [q for q in range(n) if y[q] != y[a] and y[q] >= 0]
            if y[a] < 0 or not pos or not neg:
                continue
            trips.append((a, max(pos, key=lambda p: d(s, a, p)),
                          min(neg, key=lambda q: d(s, a, q))))
    deltas = [max(d(t, a, q) - d(t, a, p), 0.0) for a, p, q in trips]
    dmax = max(deltas)
    total = 0.0
    for (a, p, q), delta in zip(trips, deltas):
        m = m_min + (m_max - m_min) * (delta / dmax if dmax > 0 else 0.0)
        total += max(d(s, a, p) - d(s, a, q) + m, 0.0)
    return total / len(trips), len(trips)


@pytest.mark.parametrize('metric,mining', [('squared_l2', 'all'),
                                           ('angle', 'all'),
                                           ('squared_l2', 'hard')])
def test_triplet_matches_hand_computation(metric, mining):
    s, t = _pair(8, 3, 4, seed=9)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, -1, 3])
    loss = MODELS.build(dict(type='TripletDistillationLoss', metric=metric,
                             mining=mining, loss_weight=2.0))
    out = loss(s, t, labels)
    ref, count = _hand_triplet(s, t, labels, metric=metric, mining=mining)
    assert out['num_triplets'].item() == count
    assert out['loss'].item() == pytest.approx(2 * ref, rel=1e-10)


def test_triplet_edge_cases_and_gradcheck():
    s, t = _pair(6, 3, 3, seed=10)
    loss = TripletDistillationLoss()
    # no positive pair: 0, still attached to the graph
    x = s.clone().requires_grad_()
    out = loss(x, t, torch.arange(6))
    assert out['loss'].item() == 0 and out['num_triplets'].item() == 0
    out['loss'].backward()
    # a teacher that never separates a triplet: the margin is m_min
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    same_t = torch.ones(6, 3, dtype=F64)
    assert loss(s, same_t, labels)['margin_mean'].item() == pytest.approx(0.2)
    y = torch.tensor([0, 0, 1, 1, 0, 2])
    for mining in ('all', 'hard'):
        fn = TripletDistillationLoss(mining=mining)
        xx = s.clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda a: fn(a, t, y)['loss'],
                                        (xx, ))


# ----------------------------------------------- 2 gloo processes vs 1
SPLIT = 4  # rank 0 holds 4 samples, rank 1 holds 6 (uneven shards)


def _losses():
    return dict(
        rkd=RKDLoss(angle_chunk=3),
        sp=SPLoss(loss_weight=10.0),
        sp_gram=SPLoss(normalize_features=False, normalize_rows=True,
                       loss_weight=10.0),
        cckd=CCKDLoss(loss_weight=100.0),
        darkrank=DarkRankLoss(),
        triplet=TripletDistillationLoss(),
        triplet_hard=TripletDistillationLoss(mining='hard'))


def _global_batch():
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(10, 5, generator=gen, dtype=F64)
    t = torch.randn(10, 6, generator=gen, dtype=F64)
    y = torch.tensor([0, 1, 2, 0, 1, 3, 2, 0, 4, 3])
    return x, t, y


def _weight():
    return torch.linspace(-1, 1, 20, dtype=F64).reshape(5, 4)


def _run(shard):
    x, t, y = _global_batch()
    x, t, y = x[shard], t[shard], y[shard]
    res = {}
    for name, loss in _losses().items():
        w = _weight().requires_grad_()
        args = (x @ w, t, y) if name.startswith('triplet') else (x @ w, t)
        value = loss(*args)['loss']
        value.backward()
        res[name] = (value.detach(), w.grad)
    # MarginDistillation: running class centers updated from all ranks
    md = MarginDistillationLoss(num_classes=5, embed_dim=4).double()
    md(x @ _weight(), t[:, :4], y)
    return res, md.state_dict()


def _rank_run(rank, world):
    shard = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
    res, md_state = _run(shard)
    for name, (value, grad) in res.items():
        grad = grad.clone()
        dist.all_reduce(grad)  # what DDP does: average over the ranks
        res[name] = (value, grad / world)
    return dict(res=res, md=md_state)


def test_two_process_gather_matches_concatenated_batch(run_gloo):
    results = run_gloo(_rank_run)
    ref, ref_md = _run(slice(None))
    for saved in results:
        r = saved['res']
        assert set(r) == set(ref)
        for name, (value, grad) in r.items():
            torch.testing.assert_close(value, ref[name][0], msg=name)
            torch.testing.assert_close(grad, ref[name][1], msg=name)
        # MarginDistillation's running centers see the whole batch on
        # every rank
        for k, v in ref_md.items():
            torch.testing.assert_close(saved['md'][k], v)
    # without gathering each rank sees only its shard: different values
    x, t, _ = _global_batch()
    local = RKDLoss(gather=False)(x[:SPLIT], t[:SPLIT])['loss']
    assert not torch.isclose(local, ref['rkd'][0])

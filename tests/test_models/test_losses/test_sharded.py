"""PartialFCHead and KD / DKD / GKD on class-sharded logits.

Real gloo process groups of 2 and 4 ranks (one spawn per world size runs
every case of :mod:`.sharded_cases`; process start-up dominates) and one
process without a group (the code path of a world of one, where every
collective is skipped). Each rank's loss and gradients are compared with
single-process computations on the gathered batch / logits."""
import math

import pytest
import torch
import torch.nn.functional as F
from spawn_utils import run_on_gloo

from mmfacekd.models.heads import MarginHead, PartialFCHead
from mmfacekd.models.heads.partial_fc_head import _mix_seed
from mmfacekd.models.heads.shard_checkpoint import shard_optimizer_state
from mmfacekd.models.losses import DKDLoss, GKDLoss, ShardedGKDLoss
from mmfacekd.models.losses.gkd import select_primary_k
from mmfacekd.models.losses.sharded import (
    sharded_group_classes,
    sharded_softmax_stats,
)
from mmfacekd.models.utils.class_shard import class_shard

from . import sharded_cases as cases


@pytest.fixture(scope='module', params=[1, 2, 4], ids=lambda w: f'world{w}')
def ranks(request, tmp_path_factory):
    """What every rank of a world returned (rank order)."""
    world = request.param
    if world == 1:
        return [cases.all_cases(0, 1)]
    out = tmp_path_factory.mktemp(f'gloo{world}')
    return run_on_gloo(cases.all_cases, world, out)


def _close(got, ref, rtol=1e-5):
    """Max abs difference within ``rtol`` of the reference's max abs."""
    return float((got - ref).abs().max()) <= rtol * float(ref.abs().max())


def test_sharded_losses_equal_single_process(ranks):
    for name, plain, _, kw, needs_label, dtype in cases.CASES:
        s, t, y = cases.data(dtype)
        ref_loss, ref_grad = cases.call(plain(**kw), s, t, y, needs_label)
        for rank, res in enumerate(ranks):
            loss = res['loss'][name][0]
            assert torch.allclose(loss, ref_loss, rtol=1e-5, atol=0), \
                (name, rank, loss, ref_loss)
        grad = torch.cat([res['loss'][name][1] for res in ranks], dim=1)
        assert _close(grad, ref_grad), name


def test_eq3_k_and_group_exact_across_shards(ranks):
    for name, z, tau, temp in cases.selection_cases():
        ref_k = select_primary_k(z, tau, temp, selection='sort')
        ref_mask = GKDLoss(tau=tau, temperature=temp,
                           selection='sort').primary_mask(z, z)
        for res in ranks:
            assert torch.equal(res['loss'][f'k_{name}'][0], ref_k), name
        mask = torch.cat([res['loss'][f'k_{name}'][1] for res in ranks], 1)
        assert torch.equal(mask, ref_mask), name
    # the tie rows by hand (sharded_cases.tie_data): the first minimum of
    # |cum - tau|, lower global columns first
    mask = torch.cat([res['loss']['k_ties'][1] for res in ranks], dim=1)
    assert ranks[0]['loss']['k_ties'][0].tolist() == [2, 3, 2, 14]
    assert mask[0].nonzero().flatten().tolist() == [1, 7]
    assert mask[1].nonzero().flatten().tolist() == [5, 6, 12]
    assert mask[2].nonzero().flatten().tolist() == [0, 11]
    assert mask[3].nonzero().flatten().tolist() == list(range(14))
    tie, y = cases.tie_data(), torch.tensor([22, 0, 5, 9])
    for force in (False, True):
        ref = GKDLoss(k_mode='fixed', fixed_k=7, force_target=force,
                      selection='sort').primary_mask(tie, tie, y)
        got = torch.cat(
            [res['loss'][f'topk_ties_force{int(force)}'][1] for res in ranks],
            dim=1)
        assert torch.equal(got, ref), force
    # by hand: 4 classes above, then the lowest tied columns; forcing 22
    # drops the last of them (column 3)
    assert got[0].nonzero().flatten().tolist() == [0, 1, 2, 7, 13, 20, 22]


def test_partial_fc_equals_margin_head_on_gathered_batch(ranks):
    world = len(ranks)
    x, y, w = cases.head_data(world)
    for name, kw in cases.MARGINS.items():
        ref = MarginHead(cases.HEAD_C, in_channels=cases.HEAD_D, **kw)
        ref.weight.data.copy_(w)
        xr = x.clone().requires_grad_()
        losses = ref.loss_by_logits(ref.get_logits(xr, y), y)
        losses['loss_cls'].backward()
        for res in ranks:
            loss, _, _, acc = res['head'][name]
            assert torch.allclose(loss, losses['loss_cls'], rtol=1e-5), name
            assert torch.equal(acc, losses['accuracy']), name
        # embeddings: W x the single-process gradient (DDP averages it)
        grad_x = torch.cat([res['head'][name][1] for res in ranks]) / world
        assert _close(grad_x, xr.grad), name
        grad_w = torch.cat([res['head'][name][2] for res in ranks])
        assert _close(grad_w, ref.weight.grad), name


def test_initial_head_does_not_depend_on_world_size(ranks):
    torch.manual_seed(0)
    single = PartialFCHead(cases.HEAD_C, in_channels=cases.HEAD_D).weight
    full = torch.cat([res['head']['init'] for res in ranks])
    assert torch.equal(full, single.detach())
    assert 0.008 < float(single.detach().std()) < 0.012


def test_sampled_support_by_hand(ranks):
    world = len(ranks)
    x, y, w = cases.head_data(world)
    got = [res['head']['sampled'] for res in ranks]
    support = torch.cat([g['class_index'] for g in got])
    for rank, g in enumerate(got):
        shard = class_shard(cases.HEAD_C, world, rank)
        positives = y[(y >= shard.start) & (y < shard.stop)].unique()
        keep = max(positives.numel(),
                   math.floor(cases.SAMPLE_RATE * shard.size))
        assert g['class_index'].numel() == keep
        assert set(positives.tolist()) <= set(g['class_index'].tolist())
        assert torch.equal(g['teacher_index'], g['class_index'])
        assert torch.equal(g['column_label'], got[0]['column_label'])
    label = got[0]['column_label']
    assert torch.equal(support[label], y)
    # the margin CE on the support alone, single process
    ref = MarginHead(support.numel(), in_channels=cases.HEAD_D, s=16.0,
                     m2=0.3)
    ref.weight.data.copy_(w[support])
    xr = x.clone().requires_grad_()
    ref_loss = ref.loss_by_logits(ref.get_logits(xr, label), label)
    ref_loss['loss_cls'].backward()
    for g in got:
        assert torch.allclose(g['loss'], ref_loss['loss_cls'], rtol=1e-5)
    assert _close(torch.cat([g['grad_x'] for g in got]) / world, xr.grad)
    grad_w = torch.cat([g['grad_w'] for g in got])
    assert _close(grad_w[support], ref.weight.grad)
    dropped = torch.ones(cases.HEAD_C, dtype=torch.bool)
    dropped[support] = False
    assert (grad_w[dropped] == 0).all()
    # logit KD on the support: both softmaxes renormalised on it, by hand
    s = torch.cat([g['student_logits'] for g in got], dim=1).double()
    t = torch.cat([g['teacher_logits'] for g in got], dim=1).double()
    p_t = torch.softmax(t / 4, dim=1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / 4, dim=1))).sum(1)
    refs = dict(kd=kl.mean() * 16,
                dkd=DKDLoss(temperature=4.0)(s, t, label),
                gkd=GKDLoss(temperature=4.0, force_target=True)(s, t,
                                                                label)['loss'])
    for name, value in refs.items():
        for g in got:
            assert math.isclose(float(g[name][0]), float(value),
                                rel_tol=1e-5), name


def test_negative_sampling_follows_the_documented_rng(ranks):
    world = len(ranks)
    for rank, res in enumerate(ranks):
        twin_a, twin_b = res['head']['draws']
        assert all(torch.equal(a, b) for a, b in zip(twin_a, twin_b))
        shard = class_shard(cases.HEAD_C, world, rank)
        keep = max(1, math.floor(cases.SAMPLE_RATE * shard.size))
        for step, draw in enumerate(twin_a):  # by hand: class 0 the
            # only positive; the generator of (seed, rank, step)
            gen = torch.Generator().manual_seed(_mix_seed(123, rank, step))
            positive = [0] if shard.start == 0 else []
            negatives = [c for c in range(shard.size) if c not in positive]
            order = torch.randperm(len(negatives), generator=gen)
            picked = [negatives[i] for i in order[:keep - len(positive)]]
            assert draw.tolist() == sorted(positive + picked)


def test_float32_statistics_under_autocast(ranks):
    for res in ranks:
        amp_loss, dtype = res['head']['amp']
        assert dtype == torch.float32 and amp_loss.dtype == torch.float32
        fp32 = res['head']['arcface'][0]
        assert math.isclose(float(amp_loss), float(fp32), rel_tol=3e-2)


def test_bad_input_one_clear_error_on_every_rank(ranks):
    world = len(ranks)
    last = world - 1
    for res in ranks:
        msg = res['head']['err_label']
        assert f'rank {last}: labels in' in msg and 'num_classes' in msg
        assert f'[0, {cases.HEAD_C})' in msg
        if world == 1:
            assert res['head']['err_batch'] == ''
            assert res['head']['err_rows'] == ''
            continue
        msg = res['head']['err_batch']
        assert 'batch size differs across ranks' in msg
        assert f'rank {last}: {cases.B_LOCAL - 1}' in msg
        assert 'round_up' in msg
        msg = res['head']['err_rows']
        assert 'number of logit rows differs' in msg
        assert f'rank {last}: {cases.B - 1}' in msg


def test_partial_fc_options_are_checked():
    with pytest.raises(ValueError, match='sample_rate'):
        PartialFCHead(10, in_channels=4, sample_rate=0.0)
    with pytest.raises(ValueError, match='num_classes'):
        PartialFCHead(0, in_channels=4)
    head = PartialFCHead(10, in_channels=4)
    with pytest.raises(ValueError, match='class_index'):
        head.get_logits(torch.randn(2, 4), class_index=torch.tensor([3, 1]))
    with pytest.raises(ValueError, match='at least one class'):
        class_shard(3, 4, 0)
    assert [class_shard(23, 4, r)[2:] for r in range(4)] == [
        (0, 6), (6, 12), (12, 18), (18, 23)]


def test_cross_entropy_is_the_plain_one_at_world_one():
    """World of one, r = 1: the loss is F.cross_entropy of the margin
    logits, by hand."""
    torch.manual_seed(1)
    head = PartialFCHead(7, in_channels=4, s=8.0, m2=0.0, m3=0.3)
    x, y = torch.randn(5, 4), torch.tensor([0, 6, 3, 3, 1])
    cos = F.normalize(x) @ F.normalize(head.weight.detach()).t()
    cos[torch.arange(5), y] -= 0.3
    ref = F.cross_entropy(8.0 * cos, y)
    assert torch.allclose(head.loss(x, [_Sample(v) for v in y])['loss_cls'],
                          ref, rtol=1e-6)


class _Sample:

    def __init__(self, label):
        self.gt_label = label


def test_ddp_step_equals_single_process_on_the_global_batch(ranks):
    """FaceDistributedDataParallel leaves the class shards out (they differ
    in size, 3 and 2 classes, and must not be averaged) and averages the
    backbone: every gradient equals the single-process MarginHead step on
    the whole batch."""
    world = len(ranks)
    model = cases.recognizer('MarginHead')
    # the full PartialFC init (one process, no group) as the plain head
    model.head.weight.data.copy_(cases.pfc_init())
    images, samples = cases.ddp_data(world)
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples))
    ref = model(**data, mode='loss')['loss_cls']
    ref.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for res in ranks:
        assert torch.allclose(res['ddp']['loss'], ref, rtol=1e-5)
        got = res['ddp']['grads']
        assert set(got) == set(grads)
        for name, grad in grads.items():
            if name == 'head.weight':
                continue
            assert _close(got[name], grad, rtol=1e-4), name
    head = torch.cat([res['ddp']['grads']['head.weight'] for res in ranks])
    assert _close(head, grads['head.weight'])


def test_full_head_checkpoint_loads_as_shards(ranks):
    world = len(ranks)
    _, _, w = cases.head_data(world)
    assert torch.equal(torch.cat([res['head']['loaded'] for res in ranks]), w)
    for rank, res in enumerate(ranks):
        msg = res['head']['err_shard']
        assert f'rank {rank} of {world}' in msg and "'weight'" in msg
        assert f'expected the full head ({cases.HEAD_C}, {cases.HEAD_D})' \
            in msg


def test_distiller_with_sharded_heads_equals_single_process(ranks,
                                                            tmp_path):
    """Student PartialFCHead + frozen sharded teacher head (loaded from a
    full checkpoint) + ShardedGKDLoss / ShardedKDLoss under DDP == the plain
    distiller (MarginHead, GKDLoss, KDLoss) on the whole batch."""
    world = len(ranks)
    ckpt = cases.teacher_checkpoint(str(tmp_path / 'teacher.pth'))
    ref = cases.build_distiller('MarginHead', ckpt)
    ref.student.head.weight.data.copy_(cases.pfc_init())
    images, samples = cases.ddp_data(world)
    data = ref.data_preprocessor(dict(inputs=images, data_samples=samples))
    losses, grads = cases.distill_step(ref, data)
    assert {'student.loss_cls', 'distill.loss_gkd', 'distill.loss_kd'} \
        <= set(losses)
    for res in ranks:
        got_losses, got = res['distill']
        assert set(got_losses) == set(losses)
        for key, value in losses.items():
            assert torch.allclose(got_losses[key], value, rtol=1e-5), key
        for name, grad in grads.items():
            if name != 'head.weight':
                assert _close(got[name], grad, rtol=1e-4), name
    head = torch.cat([res['distill'][1]['head.weight'] for res in ranks])
    assert _close(head, grads['head.weight'])


@pytest.mark.parametrize('kind', list(cases.OPTIMIZERS))
def test_checkpoint_holds_the_full_head_and_reshards_on_any_world(ranks,
                                                                  kind):
    """Rank 0's checkpoint (as MMEngine writes it) holds the full weight and
    optimizer states; the same world resumes each rank's shard exactly, and
    one process (another world size) resumes the full head."""
    got = [res['ckpt'][kind] for res in ranks]
    checkpoint = got[0]['checkpoint']
    full_w = torch.cat([g['own'][0] for g in got])
    names = sorted(got[0]['own'][1])
    assert names == (['momentum_buffer'] if kind == 'sgd' else
                     ['exp_avg', 'exp_avg_sq'])
    full = {n: torch.cat([g['own'][1][n] for g in got]) for n in names}
    assert torch.equal(checkpoint['state_dict']['weight'], full_w)
    for name, value in full.items():
        assert torch.equal(checkpoint['optimizer']['state'][0][name], value)
        assert value.abs().sum() > 0
    for g in got:
        assert torch.equal(g['resumed'][0], g['own'][0])
        for name in names:
            assert torch.equal(g['resumed'][1][name], g['own'][1][name])
    head = PartialFCHead(cases.HEAD_C, in_channels=cases.HEAD_D)
    optimizer = cases.OPTIMIZERS[kind](head.parameters())
    head.load_state_dict(checkpoint['state_dict'])
    shard_optimizer_state(checkpoint, head, optimizer)
    optimizer.load_state_dict(checkpoint['optimizer'])
    assert torch.equal(head.weight.detach(), full_w)
    for name, value in full.items():
        assert torch.equal(optimizer.state[head.weight][name], value)


# ------------------------------------------ the histogram search of eq. 3
SEARCH_C = 6001  # above selection.FINAL: the default search bins first
#: (name, BINS, FINAL, MAX_ROUNDS): the defaults, tiny bins (many rounds
#: down to a handful of gathered candidates) and one round only (the rest
#: of the crossing bin is gathered whatever its size)
SEARCH_SETTINGS = (('default', None, None, None), ('tiny', 4, 3, 8),
                   ('capped', 4, 3, 1))


def _search_data(dtype):
    """Rows that take every path of the sharded eq. 3 search: random
    logits (k small at T = 1, large at T = 4), a flat row (one tie group of
    all columns), a few distinct values repeated (the crossing bin is a
    tie group), a flat teacher with one confident class (large k at T =
    4), and distinct values a few ulps apart (many rounds)."""
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(8, SEARCH_C, generator=gen, dtype=torch.float64) * 4
    z[4] = 0.0
    z[5] = torch.randint(0, 3, (SEARCH_C, ), generator=gen) * 1e-3
    z[6] = 0.0
    z[6, 17] = 30.0
    z = z.to(dtype)
    z[7] = 1.0 + torch.randperm(SEARCH_C, generator=gen).to(dtype) \
        * torch.finfo(dtype).eps
    return z, torch.randint(0, SEARCH_C, (8, ), generator=gen)


def _search_cases(rank, world):
    from mmfacekd.models.losses.sharded import selection
    shard = class_shard(SEARCH_C, world, rank)
    cols = slice(shard.start, shard.stop)
    defaults = (selection.BINS, selection.FINAL, selection.MAX_ROUNDS)
    rounds = [0]
    compact = selection._compact

    def counted(*args):
        rounds[0] += 1
        return compact(*args)

    selection._compact = counted
    out = {}
    try:
        for name, *setting in SEARCH_SETTINGS:
            (selection.BINS, selection.FINAL, selection.MAX_ROUNDS) = (
                d if s is None else s for s, d in zip(setting, defaults))
            for dtype in (torch.float32, torch.float64):
                z, y = _search_data(dtype)
                zl = z[:, cols]
                for temp in (1.0, 4.0):
                    rounds[0] = 0
                    g = sharded_group_classes(
                        zl, sharded_softmax_stats(zl, temp), shard.start,
                        SEARCH_C, tau=0.93)
                    out[(name, dtype, temp)] = (g.k, g.mask, rounds[0])
                k = torch.tensor([1, 5, 3000, 6001, 2999, 4500, 2, 700])
                g = sharded_group_classes(zl, None, shard.start, SEARCH_C,
                                          k=k, gt_label=y)
                out[(name, dtype, 'topk')] = (g.k, g.mask)
            z, y = _search_data(torch.float32)
            out[(name, 'loss')] = cases.call(
                ShardedGKDLoss(temperature=4.0, force_target=True),
                z[:, cols] * 0.5, z[:, cols], y, True)
    finally:
        selection._compact = compact
        selection.BINS, selection.FINAL, selection.MAX_ROUNDS = defaults
    return out


@pytest.mark.parametrize('world', [1, 2, 3])
def test_histogram_search_equals_single_process(world, run_gloo):
    """Eq. 3 k and masks, given k with a forced target, and the GKD loss
    and gradient on rows needing several histogram rounds, the gathered
    candidates, whole tie groups and a capped search, against the
    single-process stable sort, on 1, 2 and 3 (uneven) gloo ranks."""
    got = [_search_cases(0, 1)] if world == 1 else run_gloo(_search_cases,
                                                            world)
    for name, *_ in SEARCH_SETTINGS:
        for dtype in (torch.float32, torch.float64):
            z, y = _search_data(dtype)
            for temp in (1.0, 4.0):
                ref_k = select_primary_k(z, 0.93, temp, selection='sort')
                ref_mask = GKDLoss(tau=0.93, temperature=temp,
                                   selection='sort').primary_mask(z, z)
                key = (name, dtype, temp)
                for res in got:
                    assert torch.equal(res[key][0], ref_k), key
                mask = torch.cat([res[key][1] for res in got], dim=1)
                assert torch.equal(mask, ref_mask.bool()), key
                n_rounds = got[0][key][2]
                assert {'default': 1 <= n_rounds <= 3, 'tiny': n_rounds > 2,
                        'capped': n_rounds == 1}[name], (key, n_rounds)
            k = torch.tensor([1, 5, 3000, 6001, 2999, 4500, 2, 700])
            for res in got:
                assert torch.equal(res[(name, dtype, 'topk')][0], k)
            ref = torch.cat([
                GKDLoss(k_mode='fixed', fixed_k=int(kk), force_target=True,
                        selection='sort').primary_mask(z[i:i + 1],
                                                       z[i:i + 1],
                                                       y[i:i + 1])
                for i, kk in enumerate(k)])
            mask = torch.cat([res[(name, dtype, 'topk')][1] for res in got],
                             dim=1)
            assert torch.equal(mask, ref.bool()), (name, dtype)
        z, y = _search_data(torch.float32)
        ref_loss, ref_grad = cases.call(
            GKDLoss(temperature=4.0, force_target=True, selection='sort'),
            z * 0.5, z, y, True)
        for res in got:
            assert torch.allclose(res[(name, 'loss')][0], ref_loss,
                                  rtol=1e-5, atol=0), name
        grad = torch.cat([res[(name, 'loss')][1] for res in got], dim=1)
        assert _close(grad, ref_grad), name

"""The row-wide shift of the sharded grouped KL terms (eq. 5, 6, 9) and its
fallback: a row whose secondary group lies hundreds of nats below the row
maximum (its float32 exponentials underflow to 0 with that shift) is
recomputed with a shift per group, on 1 and 2 gloo ranks, and every term
and gradient equals the single-process computation (float32, and float64
within float32's resolution)."""
import pytest
import torch

from mmfacekd.models.losses.gkd import grouped_kl_terms
from mmfacekd.models.losses.sharded import sharded_grouped_kl_terms
from mmfacekd.models.utils.class_shard import class_shard

B, C, T = 4, 11, 1.0
WEIGHTS = (1.0, 0.7, 0.3)  # primary, secondary, binary: all three checked


def _data():
    gen = torch.Generator().manual_seed(5)
    s = torch.randn(B, C, generator=gen, dtype=torch.float64) * 2
    t = torch.randn(B, C, generator=gen, dtype=torch.float64) * 2
    # rows 0, 1: both networks' secondary classes ~300 nats below the top;
    # row 2: only the student's; row 3: an ordinary row
    for row, nets in ((0, (s, t)), (1, (s, t)), (2, (s, ))):
        for z in nets:
            z[row, 3:] -= 300.0
    mask = torch.zeros(B, C, dtype=torch.bool)
    mask[:, :3] = True  # Phi: the three top classes of rows 0-2
    return s.float(), t.float(), mask


def _weighted(terms):
    return sum(w * x.sum() for w, x in zip(WEIGHTS, terms[:3]))


def _sharded(rank, world):
    s, t, mask = _data()
    cols = class_shard(C, world, rank)
    cols = slice(cols.start, cols.stop)
    s = s[:, cols].clone().requires_grad_()
    terms = sharded_grouped_kl_terms(s, t[:, cols], mask[:, cols], T)
    _weighted(terms).backward()
    return [x.detach() for x in terms[:3]], s.grad


def _check(results):
    s, t, mask = _data()
    # the regime: with the row maximum as shift, the secondary group's
    # float32 exponentials are all 0 (their sum would be lost)
    gap = (s[0, 3:] - s[0].max()) / T
    assert torch.exp(gap).max() == 0
    refs = []
    for dtype in (torch.float32, torch.float64):
        z = s.to(dtype).clone().requires_grad_()
        terms = grouped_kl_terms(z, t.to(dtype), mask.to(dtype), T)
        _weighted(terms).backward()
        assert all(torch.isfinite(x).all() for x in terms[:3])
        refs.append(([x.detach().double() for x in terms[:3]],
                     z.grad.double()))
    assert float(refs[1][0][1][0]) > 1e-3  # the group carries a KL
    grad = torch.cat([g for _, g in results], dim=1).double()
    for want, want_grad in refs:
        # within float32's resolution of logits near -300 (3 ulps, 1e-4;
        # the ranks sum in another order): a lost group is off by O(1)
        for terms, _ in results:
            for got, ref in zip(terms, want):
                assert torch.allclose(got.double(), ref, rtol=1e-5,
                                      atol=1e-4), (got, ref)
        err = (grad - want_grad).abs().max() / want_grad.abs().max()
        assert float(err) <= 1e-5


def test_underflowing_group_is_recomputed_one_process():
    _check([_sharded(0, 1)])


@pytest.mark.parametrize('world', [2])
def test_underflowing_group_is_recomputed_two_ranks(world, run_gloo):
    _check(run_gloo(_sharded, world))

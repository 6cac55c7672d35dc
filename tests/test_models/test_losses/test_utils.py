"""The input helpers of the losses: check_logits_pair and
prepare_embedding_pair (checks, upcast, flatten, detach, normalize and the
2-process gather)."""
import pytest
import torch
import torch.nn.functional as F

from mmfacekd.models.losses.utils import (
    check_logits_pair,
    prepare_embedding_pair,
)

F64 = torch.float64


def _pair(shape_s=(4, 3), shape_t=(4, 5), dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape_s, generator=gen).to(dtype),
            torch.randn(*shape_t, generator=gen).to(dtype))


def test_check_logits_pair():
    check_logits_pair(*_pair((4, 3), (4, 3)))
    for shapes in (((4, 3), (4, 5)), ((4, 3), (5, 3)), ((4, 3, 1),
                                                        (4, 3, 1))):
        with pytest.raises(ValueError, match=r'\(B, C\) shape, got '):
            check_logits_pair(*_pair(*shapes))


@pytest.mark.parametrize('flatten', [True, False])
def test_batch_mismatch_names_the_shapes(flatten):
    s, t = _pair((4, 3), (5, 3))
    with pytest.raises(ValueError, match=r'got \(4, 3\) and \(5, 3\)'):
        prepare_embedding_pair(s, t, flatten=flatten)


def test_flatten_or_require_2d():
    s, t = _pair((4, 2, 3, 3), (4, 6))
    xs, xt = prepare_embedding_pair(s, t)
    assert xs.shape == (4, 18) and xt.shape == (4, 6)
    torch.testing.assert_close(xs, s.reshape(4, -1))
    with pytest.raises(ValueError,
                       match=r'\(B, D\).*got \(4, 2, 3, 3\) and \(4, 6\)'):
        prepare_embedding_pair(s, t, flatten=False)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_is_upcast_to_float32(dtype):
    s, t = _pair(dtype=dtype)
    xs, xt = prepare_embedding_pair(s, t, normalize=True)
    assert xs.dtype == xt.dtype == torch.float32
    # normalized in float32, not in half precision
    torch.testing.assert_close(xs, F.normalize(s.float(), dim=1))
    torch.testing.assert_close(xt, F.normalize(t.float(), dim=1))


def test_teacher_takes_the_student_dtype():
    s, t = _pair(dtype=F64)
    xs, xt = prepare_embedding_pair(s, t.float())
    assert xs.dtype == xt.dtype == F64
    torch.testing.assert_close(xt, t.float().double())


def test_teacher_is_detached():
    s, t = _pair()
    s.requires_grad_()
    t.requires_grad_()
    xs, xt = prepare_embedding_pair(s, t)
    assert xs.requires_grad and not xt.requires_grad
    (xs.sum() * xt.sum()).backward()
    assert t.grad is None
    torch.testing.assert_close(s.grad, torch.full_like(s, t.sum().item()))


def test_normalize_gives_unit_rows():
    s, t = _pair(dtype=F64)
    xs, xt = prepare_embedding_pair(s * 7, t * 0.01, normalize=True)
    for x in (xs, xt):
        torch.testing.assert_close(x.norm(dim=1), torch.ones(4, dtype=F64))
    torch.testing.assert_close(xs, F.normalize(s, dim=1))
    raw, _ = prepare_embedding_pair(s * 7, t)
    torch.testing.assert_close(raw, s * 7)


def test_gather_without_process_group_is_the_local_batch():
    s, t = _pair()
    s.requires_grad_()
    xs, xt = prepare_embedding_pair(s, t, gather=True)
    assert torch.equal(xs, s) and torch.equal(xt, t)
    assert xs.requires_grad and not xt.requires_grad


# ----------------------------------------------- 2 gloo processes
SPLIT = 2  # rank 0 holds 2 samples, rank 1 holds 3 (uneven shards)


def _global_pair():
    return _pair((5, 3), (5, 4), dtype=torch.float16, seed=3)


def _row_weight():
    return torch.arange(15, dtype=torch.float32).reshape(5, 3)


def _rank_gather(rank, world):
    s, t = _global_pair()
    shard = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
    s = s[shard].clone().requires_grad_()
    xs, xt = prepare_embedding_pair(s, t[shard], gather=True)
    # the same loss on every rank, as the relational losses compute it
    (xs * _row_weight()).sum().backward()
    return dict(xs=xs.detach(), xt=xt, grad=s.grad,
                requires_grad=torch.tensor([xs.requires_grad,
                                            xt.requires_grad]))


def test_gather_concatenates_in_rank_order_and_keeps_local_grad(run_gloo):
    results = run_gloo(_rank_gather)
    s, t = _global_pair()
    for rank, r in enumerate(results):
        # the global batch in rank order, upcast to float32
        torch.testing.assert_close(r['xs'], s.float())
        torch.testing.assert_close(r['xt'], t.float())
        assert r['requires_grad'].tolist() == [True, False]
        # gradient of the local shard only, summed over the ranks' equal
        # losses (world * dL/dx, see gather_with_grad), in its dtype
        shard = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
        assert r['grad'].dtype == torch.float16
        torch.testing.assert_close(r['grad'].float(),
                                   2 * _row_weight()[shard])

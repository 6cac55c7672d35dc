"""gather_with_grad: 2 gloo processes vs one process on the whole batch."""
import torch
import torch.distributed as dist
from spawn_utils import run_on_gloo

from mmfacekd.models.utils import (
    gather_no_grad,
    gather_with_grad,
    get_world_size,
)


def _pair_loss(x: torch.Tensor) -> torch.Tensor:
    # a relational loss: every pair of rows interacts
    return (x @ x.t()).pow(2).mean()


def _full_batch():
    gen = torch.Generator().manual_seed(0)
    # uneven shards: rank 0 holds 3 rows, rank 1 holds 5
    return torch.randn(8, 4, generator=gen, dtype=torch.float64)


def _weight():
    return torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)


def _case(rank, world):
    full = _full_batch()
    shard = full[:3] if rank == 0 else full[3:]
    weight = _weight().requires_grad_()  # a weight every rank shares
    loss = _pair_loss(gather_with_grad(shard @ weight))
    loss.backward()
    grad = weight.grad.clone()
    dist.all_reduce(grad)  # what DDP does: average over ranks
    return dict(loss=loss.detach(), grad=grad / world,
                nograd=gather_no_grad(shard), world=get_world_size())


def test_single_process_is_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    assert gather_no_grad(x) is x
    assert get_world_size() == 1


def test_gather_matches_concatenated_batch(tmp_path):
    ranks = run_on_gloo(_case, 2, tmp_path)
    weight = _weight().requires_grad_()
    full = _full_batch()
    ref_loss = _pair_loss(full @ weight)
    ref_loss.backward()
    for r in ranks:
        assert r['world'] == 2
        torch.testing.assert_close(r['loss'], ref_loss.detach())
        torch.testing.assert_close(r['nograd'], full)
        # after DDP's averaging the weight gradient is the full-batch one
        torch.testing.assert_close(r['grad'], weight.grad)

"""FaceDistributedDataParallel on CPU: 2 real gloo processes. device_ids is
dropped for a CPU module, and the gradients (and the SGD step) are the
average of the ranks' gradients, as computed by hand."""
import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper
from spawn_utils import run_on_gloo

W0 = torch.tensor([[0.5, -1.0, 2.0]])
LR = 0.1


def _inputs(rank: int) -> torch.Tensor:
    """Rank-specific batches of different contents (2 rows, 3 features)."""
    return torch.arange(6, dtype=torch.float32).reshape(2, 3) * (rank + 1) \
        - rank


class Linear(BaseModel):
    """loss = sum((x @ w^T)^2) / 2  ->  dL/dw = sum_i (x_i . w) x_i."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(W0)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.fc(inputs)
        if mode == 'loss':
            return dict(loss=out.pow(2).sum() / 2)
        return out


def _hand_grad(rank: int) -> torch.Tensor:
    x = _inputs(rank)
    return ((x @ W0.t()) * x).sum(0, keepdim=True)


def _ddp_case(rank: int, world: int) -> dict:
    from mmfacekd.engine.wrappers import FaceDistributedDataParallel
    # what MMEngine's Runner passes: device_ids=[LOCAL_RANK]
    ddp = FaceDistributedDataParallel(
        module=Linear(), device_ids=[rank], output_device=rank,
        broadcast_buffers=False)
    res = dict(device_ids=ddp.device_ids, output_device=ddp.output_device)
    loss = ddp(_inputs(rank), mode='loss')['loss']
    loss.backward()
    res['grad'] = ddp.module.fc.weight.grad.clone()
    ddp.module.fc.weight.grad = None
    # MMEngine's train_step through the wrapper: one averaged SGD step
    wrapper = OptimWrapper(torch.optim.SGD(ddp.parameters(), lr=LR))
    log = ddp.train_step(dict(inputs=_inputs(rank)), wrapper)
    res['loss'] = log['loss'].detach()
    res['weight'] = ddp.module.fc.weight.detach().clone()
    # the Reducer must die while the group is still registered: freed
    # after destroy_process_group, it destroys the group itself under
    # the GIL and deadlocks with a gloo thread that waits for the GIL
    # (what tools/train.py's shutdown_dist does; ddp is still alive)
    dist.barrier()
    from mmfacekd.utils.dist_env import _release_ddp_reducers
    assert _release_ddp_reducers() == 1 and ddp.reducer is None
    return res


def test_cpu_ddp_averages_gradients_and_drops_device_ids(tmp_path):
    ranks = run_on_gloo(_ddp_case, 2, tmp_path, timeout=180)
    avg = (_hand_grad(0) + _hand_grad(1)) / 2
    assert not torch.allclose(_hand_grad(0), _hand_grad(1))  # a real average
    for rank, r in enumerate(ranks):
        assert r['device_ids'] is None and r['output_device'] is None
        torch.testing.assert_close(r['grad'], avg)
        torch.testing.assert_close(r['weight'], W0 - LR * avg)
        # the logged loss is the rank's own
        x = _inputs(rank)
        torch.testing.assert_close(r['loss'],
                                   (x @ W0.t()).pow(2).sum() / 2)

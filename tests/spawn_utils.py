"""Multi-process gloo tests that fail instead of hanging."""
import datetime
import gc
import os
import socket
import time
from typing import Any, Callable, List, Sequence

import pytest


def spawn_or_fail(fn, args=(), nprocs: int = 2, timeout: float = 300.0):
    """``torch.multiprocessing.spawn(fn, args, nprocs)`` that never hangs
    the suite: a rank's exception is re-raised as by ``mp.spawn``, and
    processes still running after ``timeout`` seconds are killed and the
    test fails naming the hang."""
    import torch.multiprocessing as mp
    ctx = mp.spawn(fn, args=args, nprocs=nprocs, join=False)
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=2):
        if time.monotonic() > deadline:
            alive = [i for i, p in enumerate(ctx.processes) if p.is_alive()]
            for p in ctx.processes:
                p.kill()
            pytest.fail(f'gloo ranks {alive} of {nprocs} still running after '
                        f'{timeout:.0f} s: a hang (killed)')


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _gloo_worker(rank: int, world: int, port: int, fn: Callable,
                 args: Sequence, out_dir: str, pg_timeout: float) -> None:
    import torch
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=pg_timeout))
    try:
        torch.set_num_threads(1)
        torch.save(fn(rank, world, *args),
                   os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        # free DDP reducers (e.g. a Runner's) while the group is alive, or
        # destroying it later can hang the exit (mmfacekd.utils.dist_env);
        # no barrier: some tests make a rank leave early on purpose
        from mmfacekd.utils.dist_env import _release_ddp_reducers
        gc.collect()
        _release_ddp_reducers()
        dist.destroy_process_group()


def run_on_gloo(fn: Callable, world: int, out_dir: str, args: Sequence = (),
                pg_timeout: float = 120.0,
                timeout: float = 300.0) -> List[Any]:
    """Call ``fn(rank, world, *args)`` on ``world`` CPU processes of one
    gloo group (collective timeout ``pg_timeout`` s) and return what each
    rank returned, in rank order. ``fn`` must be module-level (pickled)
    and return tensors or containers of them."""
    import torch
    spawn_or_fail(_gloo_worker, (world, free_port(), fn, tuple(args),
                                 str(out_dir), pg_timeout), world, timeout)
    return [torch.load(os.path.join(str(out_dir), f'rank{r}.pth'))
            for r in range(world)]


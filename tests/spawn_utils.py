"""Multi-process gloo tests that fail instead of hanging."""
import time

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

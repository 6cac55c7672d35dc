"""Process-group setup that also works without a GPU."""
import os

import torch
import torch.distributed as dist


def init_cpu_dist_if_needed(launcher: str, timeout_s: int = 1800) -> bool:
    """Create a gloo process group when launched distributed without CUDA.

    MMEngine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device``, which
    fails on CPU-only machines. ``torchrun`` (``launcher='pytorch'``) sets
    ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``; we create the
    group from that environment before the Runner, which then sees an
    initialized group and skips its own ``init_dist``.

    Returns:
        bool: True if a gloo group was created here.
    """
    if (launcher == 'none' or torch.cuda.is_available()
            or dist.is_initialized()):
        return False
    if launcher != 'pytorch':
        raise RuntimeError(
            f'CPU distributed runs support launcher "pytorch" (torchrun, as '
            f'in tools/dist_train.sh), got "{launcher}".')
    import datetime
    dist.init_process_group(
        backend='gloo', init_method='env://',
        timeout=datetime.timedelta(seconds=timeout_s))
    os.environ.setdefault('LOCAL_RANK', str(dist.get_rank()))
    print(f'mmfacekd: no GPU, created a gloo process group '
          f'(rank {dist.get_rank()} of world size {dist.get_world_size()})',
          flush=True)
    return True


def _release_ddp_reducers() -> int:
    """Free the C++ Reducer of every live ``DistributedDataParallel``.

    A Reducer holds a reference to the process group. Freed after
    ``destroy_process_group`` (e.g. when the Runner goes out of scope), it
    drops the *last* reference and ~ProcessGroupGloo joins gloo's threads
    while the freeing thread holds the GIL; a gloo thread that waits for
    the GIL then deadlocks the process at exit (seen in a 2-rank DDP test).
    Freed here, while the group is still registered, it only drops one
    reference. Returns how many were released.
    """
    import gc

    from torch.nn.parallel import DistributedDataParallel
    gc.collect()
    released = 0
    for obj in gc.get_objects():
        if isinstance(obj, DistributedDataParallel) and \
                getattr(obj, 'reducer', None) is not None:
            obj.reducer = None
            released += 1
    gc.collect()
    return released


def shutdown_dist() -> None:
    """Wait for every rank, free DDP's reducers, destroy the process group.

    Without the barrier, a rank that finishes first exits while gloo's
    threads still serve the group; on a fast run that aborted the process
    at exit ("terminate called without an active exception", SIGABRT) and
    made torchrun fail a job that had trained and saved everything. Without
    releasing the reducers first, the group can be destroyed later under
    the GIL and hang the process (:func:`_release_ddp_reducers`). Callers
    should drop their Runner before calling this.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        _release_ddp_reducers()
        dist.destroy_process_group()

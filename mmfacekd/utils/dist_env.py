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


def shutdown_dist() -> None:
    """Wait for every rank, then destroy the process group.

    Without it, a rank that finishes first exits while gloo's threads still
    serve the group; on a fast run that aborted the process at exit
    ("terminate called without an active exception", SIGABRT) and made
    torchrun fail a job that had trained and saved everything.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

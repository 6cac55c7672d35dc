"""glibc ``malloc`` settings that make CPU training and testing fast.

PyTorch allocates every activation and gradient on the host with ``malloc``.
glibc serves blocks above its mmap threshold (128 KiB at start, adapted at
run time) with a fresh ``mmap`` and returns them with ``munmap`` on free, so
each forward pass of a CNN page-faults its activations in again: on the
2-core development machine a demo MobileFaceNet forward spent most of its
time in the kernel (``sys`` time > half of ``user``). Serving every block
from the heap and keeping freed memory (``M_MMAP_MAX = 0``, a high
``M_TRIM_THRESHOLD``) removes that cost; PyTorch's own CPU tuning guide gets
the same effect by preloading jemalloc/tcmalloc, which a fresh machine may
not have. Measured by ``tools/analysis/benchmark_cpu_malloc.py``.

Only CPU runs are tuned (on a GPU the activations live in the CUDA caching
allocator). ``MMFACEKD_CPU_MALLOC=0`` turns it off; a non-glibc C library
leaves the process as it is.
"""
import ctypes
import ctypes.util
import os
from typing import Optional

__all__ = ['tune_cpu_malloc', 'MALLOC_ENV']

MALLOC_ENV = 'MMFACEKD_CPU_MALLOC'
# mallopt parameters of glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_applied: Optional[bool] = None


def tune_cpu_malloc(trim_threshold: int = 1 << 30,
                    force: bool = False) -> bool:
    """Serve host allocations from glibc's heap and keep freed memory.

    Calls ``mallopt(M_MMAP_MAX, 0)`` and ``mallopt(M_TRIM_THRESHOLD,
    trim_threshold)`` once per process (forked data-loader workers inherit
    it). Skipped when CUDA is available (unless ``force``), when
    ``MMFACEKD_CPU_MALLOC=0`` or when the C library is not glibc.

    Args:
        trim_threshold (int): Bytes of free memory at the top of the heap
            kept for reuse instead of being returned to the system.
            Defaults to 1 GiB.
        force (bool): Tune even if a GPU is present. Defaults to False.

    Returns:
        bool: Whether the settings are in effect.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(MALLOC_ENV, '1') == '0':
        return False
    if not force:
        import torch
        if torch.cuda.is_available():
            return False
    name = ctypes.util.find_library('c')
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok
    _applied = ok
    return ok

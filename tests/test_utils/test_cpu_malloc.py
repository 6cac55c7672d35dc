"""tune_cpu_malloc: large host blocks come from the heap, not from mmap.

Checked in fresh subprocesses (the settings are per process) with glibc's
own counter of mmapped chunks, ``mallinfo2().hblks``.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

CHILD = r'''
import ctypes, ctypes.util, json, sys
sys.path.insert(0, sys.argv[1])
from mmfacekd.utils.cpu_malloc import tune_cpu_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks',
        'fsmblks', 'uordblks', 'fordblks', 'keepcost')]

libc = ctypes.CDLL(ctypes.util.find_library('c'))
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
applied = tune_cpu_malloc(force=True)
before = libc.mallinfo2().hblks
ptrs = [libc.malloc(8 << 20) for _ in range(4)]  # 4 x 8 MiB
during = libc.mallinfo2().hblks
for p in ptrs:
    libc.free(p)
print(json.dumps(dict(applied=applied, new_mmaps=during - before)))
'''


def _run(env_value):
    env = dict(os.environ)
    env.pop('MMFACEKD_CPU_MALLOC', None)
    if env_value is not None:
        env['MMFACEKD_CPU_MALLOC'] = env_value
    out = subprocess.run([sys.executable, '-c', CHILD, ROOT], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _has_glibc_mallinfo2():
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library('c')
    try:
        return name is not None and hasattr(ctypes.CDLL(name), 'mallinfo2')
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_glibc_mallinfo2(),
                                reason='needs glibc >= 2.33 (mallinfo2)')


def test_tuned_process_serves_large_blocks_from_the_heap():
    r = _run(None)
    assert r['applied'] is True
    assert r['new_mmaps'] == 0


def test_opt_out_keeps_glibc_default_mmap_of_large_blocks():
    r = _run('0')
    assert r['applied'] is False
    # glibc's default threshold is at most 32 MiB: 8 MiB blocks are
    # mmapped, one chunk each
    assert r['new_mmaps'] == 4

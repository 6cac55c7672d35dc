"""Checkpoint files written atomically: a failed write leaves no torn file.

MMEngine's ``LocalBackend.put`` opens the destination and writes into it,
so a full disk or a kill mid-write leaves a truncated ``epoch_N.pth`` (or
overwrites a good one). :class:`AtomicLocalBackend` writes a temporary file
in the same folder, ``fsync`` s it and renames it over the destination
(``os.replace``, atomic on POSIX): readers see the old file or the new
one, never a part. Selected for checkpoints by
``CheckpointHook(backend_args=dict(backend='atomic_local'))`` in
``configs/_base_/default_runtime.py``.
"""
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio.backends import LocalBackend, register_backend

__all__ = ['AtomicLocalBackend', 'write_atomic']


def write_atomic(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath`` through a temporary file + rename.

    Raises:
        OSError: naming the file, the reason and that the previous file (and
            the other checkpoints of the folder) are intact.
    """
    filepath = str(filepath)
    folder = osp.dirname(osp.abspath(filepath))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f'.{osp.basename(filepath)}.', suffix='.tmp', dir=folder)
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
        tmp = None
    except OSError as e:
        raise OSError(
            e.errno,
            f'Could not write {filepath} ({e.strerror or e}); nothing was '
            f'replaced: an existing {osp.basename(filepath)} and the other '
            f'checkpoints in {folder} are intact. Free disk space or choose '
            'a writable --work-dir, then continue with --resume.') from e
    finally:
        if tmp is not None and osp.exists(tmp):
            os.unlink(tmp)


class AtomicLocalBackend(LocalBackend):
    """:class:`LocalBackend` whose ``put``/``put_text`` are atomic."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        write_atomic(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        write_atomic(obj.encode(encoding), filepath)


register_backend('atomic_local', AtomicLocalBackend, force=True)

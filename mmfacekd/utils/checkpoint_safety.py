"""Safe checkpoint loading under torch's ``weights_only=True`` default.

MMEngine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch 2.6
that means ``weights_only=True`` and MMEngine's own checkpoints (which store
its ``HistoryBuffer`` log state, numpy scalars/arrays and a few builtins in
``meta`` and ``message_hub``) are refused. Instead of loading with
``weights_only=False`` (arbitrary code execution from an untrusted file), we
allow-list exactly the types MMEngine writes, so ``--resume`` and
``load_from`` work while foreign pickled objects are still rejected.

One MMEngine type needs more than an allow-list: ``HistoryBuffer`` pickles
its statistics functions (``getattr(HistoryBuffer, 'min')``), and allowing
``getattr`` would let a crafted file reach any attribute — i.e. run code.
We therefore make ``HistoryBuffer`` pickle without those functions (its
``__setstate__`` restores the defaults), so checkpoints written with
:func:`register_safe_globals` load with ``weights_only=True``. Checkpoints
written by plain MMEngine still contain ``getattr`` and are refused; re-save
them (or load them with ``weights_only=False`` only if you trust their
origin).

Nothing happens on ``import mmfacekd``. Two explicit entry points:

* :func:`register_safe_globals` — process-wide, for MMEngine's own loaders
  (``--resume``, ``load_from``). The tools call it first thing, and the
  Runner path does through :class:`~mmfacekd.engine.SafeCheckpointHook`
  (``default_hooks.safe_checkpoint`` in ``configs/_base_/default_runtime.py``),
  whose ``before_run`` precedes the Runner's checkpoint loading.
* :func:`load_checkpoint_safely` — one ``weights_only=True`` load with the
  allow-list active only for that call (teacher weights, conversion tools).
"""
from typing import Any, List

import numpy as np
import torch


def _numpy_safe_types() -> List[object]:
    """Numpy types that MMEngine's checkpoints contain (arrays and scalars)."""
    types: List[object] = [np.ndarray, np.dtype]
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    types += [_reconstruct, scalar]
    # ``np.dtype`` of each concrete scalar type pickles as its dtype class.
    for name in ('float16', 'float32', 'float64', 'int8', 'int16', 'int32',
                 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'bool_'):
        scalar_type = getattr(np, name)
        types.append(type(np.dtype(scalar_type)))
    return types


def safe_globals() -> List[object]:
    """Return the allow-list of non-tensor types found in MMEngine
    checkpoints."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, *_numpy_safe_types()]


def _history_buffer_getstate(self) -> dict:
    """Pickle a HistoryBuffer without its (class-level) statistics
    functions."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def register_safe_globals() -> None:
    """Allow-list MMEngine's checkpoint types for ``torch.load``, process-wide.

    Also makes ``HistoryBuffer`` pickle without function references, so the
    checkpoints this process writes load with ``weights_only=True``.
    Idempotent. Called by the tools and by ``SafeCheckpointHook``.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    torch.serialization.add_safe_globals(safe_globals())


def load_checkpoint_safely(path: str, map_location: Any = 'cpu') -> Any:
    """``torch.load(path, weights_only=True)`` with MMEngine's types allowed.

    The allow-list is active only during this call, so nothing process-wide
    changes.

    Args:
        path (str): The checkpoint file (or a URL / MMEngine prefix, read
            through MMEngine's ``_load_checkpoint``).
        map_location: As for :func:`torch.load`. Defaults to ``'cpu'``.

    Returns:
        The loaded object.

    Raises:
        RuntimeError: If the file holds other pickled objects (e.g. a plain
            MMEngine checkpoint with ``getattr`` references); the message
            names the file and the fix.
    """
    import os.path as osp

    from mmengine.runner.checkpoint import _load_checkpoint
    # torch's safe_globals() context removes its globals again on exit, so
    # pass only those not allowed already (e.g. by register_safe_globals)
    allowed = set(torch.serialization.get_safe_globals())
    extra = [g for g in safe_globals() if g not in allowed]
    try:
        with torch.serialization.safe_globals(extra):
            if osp.isfile(path):
                return torch.load(path, map_location=map_location,
                                  weights_only=True)
            # URLs and MMEngine's prefixes (torch.load's default there is
            # weights_only=True as well, with the same allow-list active)
            return _load_checkpoint(path, map_location=map_location)
    except Exception as err:  # pickle.UnpicklingError and friends
        if isinstance(err, (FileNotFoundError, IsADirectoryError)):
            raise
        raise RuntimeError(
            f'{path}: refused by the safe (weights_only=True) loader: '
            f'{str(err).splitlines()[0]}. It holds objects other than '
            'tensors and the MMEngine types mmfacekd allows (a checkpoint '
            'written by plain MMEngine stores `getattr` references). If you '
            'trust the file, re-save it once in a trusted environment: '
            'torch.save(torch.load(path, weights_only=False), path).') from err

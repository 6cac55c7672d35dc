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
mmfacekd imported load with ``weights_only=True``. Checkpoints written by
plain MMEngine still contain ``getattr`` and are refused; re-save them (or
load them with ``weights_only=False`` only if you trust their origin).
"""
from typing import List

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
    """Return the allow-list of non-tensor types found in MMEngine checkpoints."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, *_numpy_safe_types()]


def _history_buffer_getstate(self) -> dict:
    """Pickle a HistoryBuffer without its (class-level) statistics functions."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def register_safe_globals() -> None:
    """Allow-list MMEngine's checkpoint types for ``torch.load``.

    Idempotent; called when :mod:`mmfacekd` is imported.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    torch.serialization.add_safe_globals(safe_globals())

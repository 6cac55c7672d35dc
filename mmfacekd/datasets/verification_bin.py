"""Verification pair sets stored as insightface ``.bin`` pickles."""
import io
import os.path as osp
import pickle
import pickletools
import zlib
from typing import Any, List, Optional, Sequence

import numpy as np
from mmengine.dataset import BaseDataset

from mmfacekd.registry import DATASETS

from .transforms.loading import LoadFaceImage
from .transforms.synthetic_mask import ApplyFaceMask

#: ``mask`` mode -> set-name suffix (``calfw`` -> ``calfw_mm``).
MASK_SUFFIXES = {'M-M': '_mm', 'M-N': '_mn'}


def load_verification_bin(path: str):
    """Load ``(bins, issame_list)`` from a ``.bin`` file, validating its
    shape."""
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'Verification set {path} not found. insightface ships lfw.bin, '
            'cfp_fp.bin, agedb_30.bin, calfw.bin, cplfw.bin inside its '
            'training-set archives (e.g. faces_emore); copy them next to '
            'train.rec or fix `ann_file`.')
    try:
        with open(path, 'rb') as f:
            data = f.read()
        _check_pickle(data)
        bins, issame = _BinUnpickler(io.BytesIO(data),
                                     encoding='bytes').load()
        bins, issame = list(bins), [bool(x) for x in issame]
    except pickle.UnpicklingError as e:
        if 'refused' not in str(e):
            raise ValueError(
                f'{path} is not a valid verification .bin: {e}. '
                'Re-download or regenerate the file.') from e
        raise ValueError(
            f'{path}: {e}. A verification .bin holds only encoded images '
            'and booleans (optionally numpy arrays); refusing to run code '
            'from it. Re-download the file from a trusted source or '
            'regenerate it.') from e
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f'{path} is not a valid verification .bin (a pickle of '
            f'(list of encoded images, list of bools)): {type(e).__name__}: '
            f'{e}. Re-download or regenerate the file.') from e
    if len(bins) != 2 * len(issame):
        raise ValueError(
            f'{path}: {len(bins)} images for {len(issame)} pairs; '
            'a .bin must hold exactly 2 images per pair.')
    for i, b in enumerate(bins):
        if not isinstance(b, (bytes, bytearray, memoryview)) and not (
                isinstance(b, np.ndarray) and b.dtype == np.uint8):
            raise ValueError(
                f'{path}: image {i} is a {type(b).__name__}, not encoded '
                'image bytes; the file is corrupt, re-download or '
                'regenerate it.')
    return bins, issame


def _bin_safe_globals() -> dict:
    """``(module, name) -> object`` of every global a real ``.bin`` uses.

    insightface's files are Python-2 pickles of ``str`` image bytes and
    ``bool`` (no globals with ``encoding='bytes'``); Python-3 pickles of
    ``bytes`` at protocol < 3 reference ``_codecs.encode``; some
    re-exported sets hold numpy arrays (``issame`` as a bool array, images
    as uint8 arrays), which need numpy's array reconstruction helpers.
    Nothing that calls an arbitrary class or function (``copyreg``,
    ``getattr``, ``eval``, ``os.*``) is on the list.
    """
    import _codecs
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    allowed = {('_codecs', 'encode'): _codecs.encode,
               ('builtins', 'bytes'): bytes,
               ('builtins', 'bytearray'): bytearray,
               ('__builtin__', 'bytearray'): bytearray,
               ('numpy', 'ndarray'): np.ndarray,
               ('numpy', 'dtype'): np.dtype}
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        allowed[(module, '_reconstruct')] = multiarray._reconstruct
        allowed[(module, 'scalar')] = multiarray.scalar
    return allowed


class _BinUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals of :func:`_bin_safe_globals`.

    ``pickle.loads`` would import and call whatever a crafted file names
    (``os.system``, …); a ``.bin`` is data, so anything else is refused.
    """
    _allowed = None

    def find_class(self, module: str, name: str) -> Any:
        if _BinUnpickler._allowed is None:
            _BinUnpickler._allowed = _bin_safe_globals()
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f'refused global {module}.{name}') from None


#: opcodes that store into the unpickler's memo at an explicit index
_MEMO_PUTS = ('PUT', 'BINPUT', 'LONG_BINPUT')


def _check_pickle(data: bytes) -> None:
    """Walk the opcodes of ``data`` without building anything.

    The C unpickler allocates what a length field announces (``BINBYTES``:
    up to 4 GiB, ``BINBYTES8``/frames: 2**64) and grows its memo to a
    ``LONG_BINPUT`` index (up to 2**32 entries) *before* it finds out that
    the data is shorter; pure-Python :func:`pickletools.genops` reads each
    argument from the bytes at hand, so a corrupt length raises here. Memo
    indices must be the sequential ones every pickler writes.
    """
    puts = 0
    for op, arg, pos in pickletools.genops(data):
        if op.name == 'MEMOIZE':
            puts += 1
        elif op.name in _MEMO_PUTS:
            if not 0 <= int(arg) <= puts:
                raise ValueError(f'at byte {pos}, {op.name} writes memo '
                                 f'entry {arg} after {puts} entries')
            puts += 1


@DATASETS.register_module()
class VerificationBinDataset(BaseDataset):
    """One verification set (LFW, CFP-FP, AgeDB-30, …) from a ``.bin`` file.

    Image ``2i`` and ``2i+1`` form pair ``i``. Every item carries
    ``set_name``, ``sample_idx`` (image index in the set) and ``pair_label``
    so :class:`VerificationMetric` can rebuild the pairs after a
    (distributed) evaluation, whatever the batch boundaries. Several sets
    are evaluated in one val loop by concatenating datasets
    (``ConcatDataset``); metric keys are ``<set_name>/accuracy`` etc.

    Masked-face protocols (GKD Table 7): ``mask='M-M'`` masks both images
    of every pair, ``mask='M-N'`` only the second image (``2i+1``) of every
    pair, with mmfacekd's own synthetic mask renderer (see
    :mod:`~mmfacekd.datasets.transforms.synthetic_mask`; not FaceX-Zoo's).
    Each masked image gets ``mask_seed = [mask_seed, crc32(base name),
    index]``, and an :class:`ApplyFaceMask` (built from ``mask_cfg``) is
    inserted right after the pipeline's ``LoadFaceImage``; the mask is a
    pure function of that seed, so every run, worker and rank sees the same
    masks, and the M-N masks are exactly the M-M masks of the second
    images. The set name gets the suffix ``_mm`` / ``_mn`` (``calfw`` →
    ``calfw_mm``, also appended to an explicit ``set_name``), so masked
    results are separate rows of :class:`VerificationMetric`
    (``calfw_mm/accuracy``, ``calfw_mn/accuracy``).

    Args:
        ann_file (str): Path of the ``.bin`` (relative to ``data_root``).
        set_name (str, optional): Metric prefix; defaults to the file stem.
        pipeline (list): Transforms (start with ``LoadFaceImage``).
        mask (str, optional): None (default), ``'M-M'`` or ``'M-N'``.
        mask_seed (int): Seed of the masks. Defaults to 0.
        mask_cfg (dict, optional): :class:`ApplyFaceMask` arguments
            (``shapes``, ``colors``, ``textures``, ``texture_prob``,
            ``jitter``, ``ear_loops``).
    """
    METAINFO: dict = dict()

    def __init__(self, ann_file: str, set_name: Optional[str] = None,
                 pipeline: Sequence = (), data_root: str = '',
                 metainfo: Optional[dict] = None,
                 mask: Optional[str] = None, mask_seed: int = 0,
                 mask_cfg: Optional[dict] = None, **kwargs) -> None:
        base = set_name or osp.splitext(osp.basename(ann_file))[0]
        if mask is not None:
            key = str(mask).upper().replace('_', '-')
            if key not in MASK_SUFFIXES:
                raise ValueError(
                    f'VerificationBinDataset: mask={mask!r}; use None, '
                    "'M-M' (both images of a pair masked) or 'M-N' (the "
                    'second image masked).')
            mask = key
            suffix = MASK_SUFFIXES[mask]
            self.set_name = base if base.endswith(suffix) else base + suffix
            self._mask_base = base[:-len(suffix)] if base.endswith(
                suffix) else base
        else:
            self.set_name = base
        self.mask, self.mask_seed = mask, int(mask_seed)
        self.mask_cfg = dict(mask_cfg or {})
        kwargs.setdefault('test_mode', True)
        super().__init__(ann_file=ann_file, data_root=data_root,
                         pipeline=list(pipeline), metainfo=metainfo,
                         **kwargs)
        if self.mask is not None:
            self._insert_mask_transform()

    def _insert_mask_transform(self) -> None:
        steps = self.pipeline.transforms
        if any(isinstance(t, ApplyFaceMask) for t in steps) or not steps:
            return  # configured by the user / no pipeline to run
        loads = [i for i, t in enumerate(steps)
                 if isinstance(t, LoadFaceImage)]
        if not loads:
            raise ValueError(
                f'VerificationBinDataset(mask={self.mask!r}): the pipeline '
                'has no LoadFaceImage, after which the masks are drawn; '
                'start the pipeline with LoadFaceImage or place an '
                'ApplyFaceMask after your image loader.')
        steps.insert(loads[0] + 1, ApplyFaceMask(**self.mask_cfg))

    def load_data_list(self) -> List[dict]:
        bins, issame = load_verification_bin(self.ann_file)
        data_list = [
            dict(img_bytes=b, sample_idx=i, pair_label=issame[i // 2],
                 set_name=self.set_name,
                 img_source=f'{self.ann_file} image {i}')
            for i, b in enumerate(bins)
        ]
        if self.mask is not None:
            crc = zlib.crc32(self._mask_base.encode('utf-8'))
            for i, item in enumerate(data_list):
                if self.mask == 'M-M' or i % 2 == 1:
                    item['mask_seed'] = [self.mask_seed, crc, i]
        return data_list

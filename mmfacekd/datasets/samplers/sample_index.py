"""Dataset indices that carry per-sample metainfo from a sampler to the model.

A sampler only yields indices, but some of what it decides concerns each
sample of the batch it builds (e.g. which samples of an identity-balanced
batch get the classification loss). :class:`SampleIndex` is an ``int`` — a
dataset indexes with it unchanged — that also carries a ``meta`` dict. The
datasets hand their index to the pipeline as ``sample_idx`` (MMEngine's
``BaseDataset.get_data_info`` does, as do ``MXRecordDataset`` and
``FaceImageFolder``), and :class:`PackFaceInputs` copies ``meta`` into the
data sample's metainfo. It pickles (DataLoader workers) and deep-copies with
its metainfo.
"""
from typing import Any, Dict

__all__ = ['SampleIndex', 'index_meta']


class SampleIndex(int):
    """A dataset index with per-sample metainfo.

    Examples:
        >>> idx = SampleIndex(7, with_cls_loss=False)
        >>> idx == 7, idx.meta
        (True, {'with_cls_loss': False})

    Args:
        index (int): The dataset index.
        **meta: Metainfo of the sample (plain Python values).
    """

    def __new__(cls, index: int, **meta: Any) -> 'SampleIndex':
        obj = super().__new__(cls, index)
        obj.meta = dict(meta)
        return obj

    def __reduce__(self):
        return _rebuild, (int(self), self.meta)

    def __repr__(self) -> str:
        return f'SampleIndex({int(self)}, {self.meta})'

    def __str__(self) -> str:  # str()/f-strings print the plain number
        return int.__repr__(self)


def _rebuild(index: int, meta: Dict[str, Any]) -> SampleIndex:
    return SampleIndex(index, **meta)


def index_meta(index: Any) -> Dict[str, Any]:
    """The metainfo carried by ``index`` (``{}`` for a plain int)."""
    return dict(getattr(index, 'meta', None) or {})

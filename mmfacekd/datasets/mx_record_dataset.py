"""insightface MXNet RecordIO training set (``train.rec``/``train.idx``)."""
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmengine.dataset import BaseDataset

from mmfacekd.registry import DATASETS

from .recordio import (
    IndexedRecordReader,
    IRHeader,
    RecordIOError,
    unpack_record,
)
from .transforms.loading import ImageDecodeError


def read_property(path: str) -> Optional[int]:
    """Return ``num_classes`` from an insightface ``property`` file, if any."""
    if not osp.isfile(path):
        return None
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        text = raw.decode('utf-8').strip()
        return int(text.split(',')[0])
    except ValueError:  # also UnicodeDecodeError
        raise RecordIOError(
            f'{path}: expected "num_classes,height,width", got '
            f'{raw[:80]!r}; fix or delete the property file.') from None


@DATASETS.register_module()
class MXRecordDataset(BaseDataset):
    """Face training set stored as insightface RecordIO.

    Follows insightface's record-0 convention: if record 0 carries a label
    array ``[a, b]``, image records are keys ``1 … a−1``; otherwise every key
    of the ``.idx`` is an image. Records are read lazily (random access, one
    file handle per DataLoader worker). Each item is a dict with
    ``img_bytes``, ``gt_label``, ``sample_idx`` and ``img_source`` (file and
    record key, for error messages) passed through ``pipeline``.

    Args:
        data_root (str): Folder with ``train.rec``, ``train.idx`` and
            (optional) ``property``.
        rec_file (str): Defaults to 'train.rec'.
        idx_file (str): Defaults to 'train.idx'.
        num_classes (int, optional): Identity count; read from ``property``
            or the identity records when not given. Labels are checked
            against it when read.
        pipeline (list): Transforms. Defaults to ().
        lazy_init (bool): Defer reading the index. Defaults to False.
        on_corrupt (str): What a record that cannot be read or decoded does:
            ``'raise'`` (default) stops with the error naming file and key;
            ``'skip'`` replaces the sample by another random one and
            attaches ``skipped_records`` (file, key, error) to the
            replacement's metainfo, so :class:`CorruptRecordHook` (a default
            hook) logs every skipped key at the end of each epoch, writes
            them to ``<work_dir>/corrupt_records.json`` and stops the run
            when their fraction exceeds its ``max_fraction``. Nothing is
            dropped silently.
    """
    METAINFO: dict = dict()

    def __init__(self,
                 data_root: str,
                 rec_file: str = 'train.rec',
                 idx_file: str = 'train.idx',
                 num_classes: Optional[int] = None,
                 pipeline: Sequence = (),
                 metainfo: Optional[dict] = None,
                 lazy_init: bool = False,
                 on_corrupt: str = 'raise',
                 **kwargs) -> None:
        if on_corrupt not in ('raise', 'skip'):
            raise ValueError(f"MXRecordDataset(on_corrupt={on_corrupt!r}): "
                             "use 'raise' or 'skip'.")
        self.on_corrupt = on_corrupt
        self.rec_path = osp.join(data_root, rec_file)
        self.idx_path = osp.join(data_root, idx_file)
        self._num_classes = num_classes
        self.reader: Optional[IndexedRecordReader] = None
        self.image_keys: np.ndarray = np.zeros(0, dtype=np.int64)
        self._gt_labels: Optional[np.ndarray] = None
        super().__init__(
            ann_file='', data_root=data_root, pipeline=list(pipeline),
            metainfo=metainfo, serialize_data=False, lazy_init=lazy_init,
            **kwargs)

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        self.reader = IndexedRecordReader(self.idx_path, self.rec_path)
        keys = sorted(self.reader.index)
        num_ids = None
        if 0 in self.reader.index:
            header, _ = unpack_record(self.reader.read(0), self._where(0))
            if header.flag > 0:
                a, b = self._key_range(header)
                # checked before np.arange: a corrupt record 0 must not
                # allocate its announced key range
                if a - 1 > len(keys):
                    raise RecordIOError(
                        f'{self._where(0)} announces image keys 1..{a - 1}, '
                        f'but {self.idx_path} has only {len(keys)} records; '
                        'record 0 is corrupt or the index is incomplete '
                        '(rebuild it from the .rec file).')
                self.image_keys = np.arange(1, a, dtype=np.int64)
                num_ids = b - a
            else:
                self.image_keys = np.asarray(keys, dtype=np.int64)
        else:
            self.image_keys = np.asarray(keys, dtype=np.int64)
        missing = np.setdiff1d(self.image_keys, np.asarray(keys))
        if missing.size:
            raise RecordIOError(
                f'{self._where(0)} announces image keys 1..'
                f'{len(self.image_keys)}, but {missing.size} are missing '
                f'from {self.idx_path} (first: {missing[0]}); the index is '
                'incomplete (rebuild it from the .rec file).')
        if self._num_classes is None:
            self._num_classes = read_property(
                osp.join(self.data_root, 'property')) or num_ids
        self._metainfo['num_classes'] = self._num_classes
        self._fully_initialized = True

    def _where(self, key: int) -> str:
        return f'{self.rec_path}, record key {key}'

    def _key_range(self, header: IRHeader) -> Tuple[int, int]:
        """``(a, b)`` of record 0's label ``[a, b]``: image keys ``1 … a−1``,
        identity keys ``a … b−1``."""
        label = header.label
        if header.flag < 2 or not np.isfinite(label[:2]).all() or \
                not 1 <= label[0] <= label[1]:
            raise RecordIOError(
                f'{self._where(0)}: the header record must carry the label '
                '[first identity key, end key] with 1 <= first <= end, got '
                f'{np.asarray(label)[:4]} (flag {header.flag}); record 0 is '
                'corrupt, re-create the .rec (or drop key 0 from the .idx '
                'to use every key as an image).')
        return int(label[0]), int(label[1])

    @property
    def num_classes(self) -> Optional[int]:
        return self._num_classes

    def __len__(self) -> int:
        if not self._fully_initialized:
            self.full_init()
        return len(self.image_keys)

    def load_data_list(self) -> List[dict]:
        return []

    def get_data_info(self, idx: int) -> dict:
        key = int(self.image_keys[idx])
        header, img_bytes = unpack_record(self.reader.read(key),
                                          self._where(key))
        label = header.label
        label = float(label[0] if isinstance(label, np.ndarray) else label)
        if not np.isfinite(label):
            raise RecordIOError(
                f'{self._where(key)}: label {label} is not a number; the '
                'record is corrupt, re-create it or remove its key from the '
                '.idx.')
        label = int(label)
        if label < 0 or (self._num_classes is not None
                         and label >= self._num_classes):
            raise RecordIOError(
                f'{self.rec_path}, record key {key}: label {label} is outside '
                f'[0, num_classes={self._num_classes}). Set num_classes '
                '(config or `property` file) to the real identity count, or '
                'fix the record.')
        return dict(img_bytes=img_bytes, gt_label=label, sample_idx=idx,
                    img_source=f'{self.rec_path} record key {key}')

    def __getitem__(self, idx: int) -> dict:
        if self.on_corrupt == 'raise' or self.test_mode:
            return super().__getitem__(idx)
        if not self._fully_initialized:
            self.full_init()
        skipped = []
        for _ in range(self.max_refetch + 1):
            try:
                data = self.prepare_data(idx)
            except (RecordIOError, ImageDecodeError) as e:
                skipped.append(dict(file=self.rec_path,
                                    key=int(self.image_keys[idx]),
                                    index=int(idx), error=str(e)[:300]))
                idx = self._rand_another()
                continue
            if data is None:
                idx = self._rand_another()
                continue
            if skipped:
                data['data_samples'].set_metainfo(
                    dict(skipped_records=skipped))
            return data
        raise RecordIOError(
            f'{self.rec_path}: {len(skipped)} records in a row could not be '
            f'read (last: {skipped[-1] if skipped else None}); the set looks '
            'corrupt beyond skipping.')

    def get_gt_labels(self) -> np.ndarray:
        """Labels of all images, in index order (computed once, cached).

        With insightface's identity records (record 0 announces identity
        keys ``a … b−1``, each holding the ``[start, end)`` image-key range of
        one identity) the labels come from those ``b − a`` small records and
        are spot-checked against the headers of 64 images spread over the
        set; otherwise (or if a check fails) every record is read once.
        No image is decoded either way.
        """
        if self._gt_labels is None or len(self._gt_labels) != len(self):
            labels = self._labels_from_identity_records()
            if labels is None:
                labels = np.array([
                    self.get_data_info(i)['gt_label']
                    for i in range(len(self))
                ], dtype=np.int64)
            self._gt_labels = labels
        return self._gt_labels

    def _labels_from_identity_records(self) -> Optional[np.ndarray]:
        """Labels from the identity records, or None if they are unusable."""
        if len(self) == 0 or 0 not in self.reader.index:
            return None
        header, _ = unpack_record(self.reader.read(0), self._where(0))
        if header.flag <= 0:
            return None
        a, b = self._key_range(header)
        # image keys are 1 … a−1 here, i.e. index = key − 1
        labels = np.full(len(self), -1, dtype=np.int64)
        for ident, key in enumerate(range(a, b)):
            if key not in self.reader.index:
                return None
            h, _ = unpack_record(self.reader.read(key), self._where(key))
            if h.flag < 2 or not np.isfinite(h.label[:2]).all():
                return None
            start, end = int(h.label[0]), int(h.label[1])
            if not 1 <= start <= end <= a:
                return None
            labels[start - 1:end - 1] = ident
        if (labels < 0).any():
            return None
        for idx in np.unique(np.linspace(0, len(self) - 1, 64).astype(int)):
            if self.get_data_info(int(idx))['gt_label'] != labels[idx]:
                return None
        return labels

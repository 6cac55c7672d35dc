"""Pure-Python reader/writer of MXNet indexed RecordIO (``.rec`` + ``.idx``).

Format (docs/formats.md §1): each record starts on a 4-byte boundary with
``uint32 magic 0xced7230a``, ``uint32 lrec`` (``cflag = lrec >> 29``,
``length = lrec & (2**29 − 1)``), the payload and zero padding to 4 bytes.
A writer splits a payload wherever the magic occurs at a 4-byte-aligned
offset inside it (cflag 1 first part, 2 middle, 3 last) and drops those 4
bytes; :meth:`IndexedRecordReader.read` joins the parts re-inserting them.
A payload is an ``IRHeader`` (``'<IfQQ'``: flag, label, id, id2), then
``flag`` float32 labels when ``flag > 0``, then the encoded image.
"""
import os
import struct
from typing import (
    BinaryIO,
    Dict,
    List,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)

import numpy as np

MAGIC = 0xced7230a
MAGIC_BYTES = struct.pack('<I', MAGIC)
_LENGTH_MASK = (1 << 29) - 1
_HEADER_FMT = '<IfQQ'
_HEADER_SIZE = struct.calcsize(_HEADER_FMT)


class RecordIOError(ValueError):
    """A malformed ``.rec``/``.idx`` file; the message names file, key and
    fix."""


class IRHeader(NamedTuple):
    """Image record header: ``label`` is a float or an array of floats."""
    flag: int
    label: Union[float, np.ndarray]
    id: int
    id2: int


def pack_record(header: IRHeader, img_bytes: bytes) -> bytes:
    """Serialize ``header`` + image bytes into a record payload."""
    label = header.label
    if isinstance(label, (int, float, np.floating, np.integer)):
        head = struct.pack(_HEADER_FMT, 0, float(label), header.id, header.id2)
        return head + img_bytes
    label = np.asarray(label, dtype=np.float32).reshape(-1)
    head = struct.pack(_HEADER_FMT, label.size, 0.0, header.id, header.id2)
    return head + label.tobytes() + img_bytes


def unpack_record(payload: bytes,
                  source: str = 'record') -> Tuple[IRHeader, bytes]:
    """Split a payload into its :class:`IRHeader` and image bytes.

    ``source`` (e.g. ``'<file>, record key <key>'``) starts the error
    messages. The label count ``flag`` is checked against the payload
    size before anything is allocated.
    """
    if len(payload) < _HEADER_SIZE:
        raise RecordIOError(
            f'{source}: payload of {len(payload)} bytes is shorter than the '
            f'{_HEADER_SIZE}-byte IRHeader; the record is corrupt, '
            're-create it or remove its key from the .idx.')
    flag, label, id1, id2 = struct.unpack_from(_HEADER_FMT, payload)
    offset = _HEADER_SIZE
    if flag > 0:
        end = offset + 4 * flag
        if end > len(payload):
            raise RecordIOError(
                f'{source}: IRHeader says {flag} labels but the payload '
                f'has only {len(payload)} bytes; the record is corrupt, '
                're-create it or remove its key from the .idx.')
        label = np.frombuffer(payload, np.float32, flag, offset).copy()
        offset = end
    return IRHeader(flag, label, id1, id2), payload[offset:]


def _encode_lrec(cflag: int, length: int) -> bytes:
    return struct.pack('<II', MAGIC, (cflag << 29) | length)


def encode_record_chunks(payload: bytes) -> bytes:
    """Frame a payload as it is written to the ``.rec`` file (with
    splitting)."""
    out = []
    start = 0
    aligned_end = (len(payload) // 4) * 4
    pos = payload.find(MAGIC_BYTES)
    while 0 <= pos < aligned_end:
        if pos % 4 == 0:
            out.append(_encode_lrec(1 if start == 0 else 2, pos - start))
            out.append(payload[start:pos])
            start = pos + 4
            pos = payload.find(MAGIC_BYTES, start)
        else:
            pos = payload.find(MAGIC_BYTES, pos + 1)
    out.append(_encode_lrec(3 if start else 0, len(payload) - start))
    out.append(payload[start:])
    out.append(b'\x00' * (-(len(payload) - start) % 4))
    return b''.join(out)


class IndexedRecordWriter:
    """Write ``train.rec`` + ``train.idx`` (keys in write order)."""

    def __init__(self, idx_path: str, rec_path: str) -> None:
        self.idx_path, self.rec_path = idx_path, rec_path
        self._rec = open(rec_path, 'wb')
        self._idx = open(idx_path, 'w')

    def write(self, key: int, payload: bytes) -> None:
        self._idx.write(f'{key}\t{self._rec.tell()}\n')
        self._rec.write(encode_record_chunks(payload))

    def close(self) -> None:
        self._rec.close()
        self._idx.close()

    def __enter__(self) -> 'IndexedRecordWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_index(idx_path: str) -> Dict[int, int]:
    """Parse an ``.idx`` file into ``{key: byte offset}``."""
    if not os.path.isfile(idx_path):
        raise FileNotFoundError(
            f'RecordIO index {idx_path} not found. Point '
            '`data_root`/`idx_file` at the folder holding train.rec and '
            'train.idx (insightface layout), or generate the synthetic set '
            'with tools/misc/make_synthetic_faces.py.')
    index: Dict[int, int] = {}
    # binary + per-line decoding: a corrupt byte is reported with its line
    with open(idx_path, 'rb') as f:
        for line_no, raw in enumerate(f, 1):
            try:
                line = raw.decode('utf-8')
            except UnicodeDecodeError:
                raise RecordIOError(
                    f'{idx_path}, line {line_no}: not UTF-8 text '
                    f'({raw[:60]!r}). The index is corrupt; rebuild it from '
                    'the .rec file.') from None
            if not line.strip():
                continue
            fields = line.split('\t')
            try:
                key, offset = int(fields[0]), int(fields[1])
            except (ValueError, IndexError):
                raise RecordIOError(
                    f'{idx_path}, line {line_no}: expected '
                    f'"<key>\\t<offset>", got {line.strip()[:80]!r}. The '
                    'index is corrupt; rebuild it from the .rec file.'
                ) from None
            if offset < 0 or not -2**63 <= key < 2**63:
                raise RecordIOError(
                    f'{idx_path}, line {line_no}: key {key} / offset '
                    f'{offset} out of range (an int64 key, an offset >= 0). '
                    'The index is corrupt; rebuild it from the .rec file.')
            index[key] = offset
    return index


class IndexedRecordReader:
    """Random access to records of an indexed RecordIO pair.

    The file handle is opened lazily **per process**, so a reader built in
    the main process is safe to use from DataLoader workers.

    Args:
        idx_path (str): Path of the ``.idx`` file.
        rec_path (str): Path of the ``.rec`` file.
    """

    def __init__(self, idx_path: str, rec_path: str) -> None:
        self.idx_path, self.rec_path = idx_path, rec_path
        self.index = read_index(idx_path)
        if not os.path.isfile(rec_path):
            raise FileNotFoundError(
                f'RecordIO data file {rec_path} not found (its index '
                f'{idx_path} exists); both files are needed.')
        self.rec_size = os.path.getsize(rec_path)
        if self.index:
            bad_key = max(self.index, key=self.index.__getitem__)
            if self.index[bad_key] + 8 > self.rec_size:
                raise RecordIOError(
                    f'{idx_path}: key {bad_key} points at offset '
                    f'{self.index[bad_key]}, past the end of {rec_path} '
                    f'({self.rec_size} bytes). The .rec is truncated or the '
                    '.idx belongs to another file; re-download or rebuild it.')
        self._file: Optional[BinaryIO] = None
        self._pid: Optional[int] = None

    @property
    def keys(self) -> List[int]:
        return list(self.index)

    def _handle(self) -> BinaryIO:
        if self._file is None or self._pid != os.getpid():
            self._file = open(self.rec_path, 'rb')
            self._pid = os.getpid()
        return self._file

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state['_file'] = state['_pid'] = None
        return state

    def read(self, key: int) -> bytes:
        """Return the full payload of record ``key`` (split parts joined)."""
        if key not in self.index:
            raise KeyError(f'key {key} is not in {self.idx_path}')
        f = self._handle()
        f.seek(self.index[key])
        parts = []
        while True:
            head = f.read(8)
            where = (f'{self.rec_path}, record key {key} '
                     f'(offset {self.index[key]})')
            if len(head) < 8:
                raise RecordIOError(
                    f'{where}: unexpected end of file; the .rec '
                    'is truncated, re-download it.')
            magic, lrec = struct.unpack('<II', head)
            if magic != MAGIC:
                raise RecordIOError(
                    f'{where}: bad magic 0x{magic:08x} '
                    f'(expected 0x{MAGIC:08x}); the offsets of '
                    f'{self.idx_path} do not match the .rec, rebuild the '
                    'index (or the .rec is corrupt: re-download it).')
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            # checked before reading: a corrupt length must not allocate
            # up to 512 MiB
            if f.tell() + length > self.rec_size:
                data = b''
            else:
                data = f.read(length)
            if len(data) < length:
                raise RecordIOError(
                    f'{where}: record claims {length} bytes but '
                    'the file ends first; the .rec is truncated.')
            f.seek(-length % 4, os.SEEK_CUR)
            expected = (0, 1) if not parts else (2, 3)
            if cflag not in expected:
                raise RecordIOError(
                    f'{where}: continuation flag {cflag} where '
                    f'{expected} was expected; the file is corrupt.')
            parts.append(data)
            if cflag in (0, 3):
                return MAGIC_BYTES.join(parts)

    def close(self) -> None:
        # getattr: __init__ may have raised before the handle existed
        if getattr(self, '_file', None) is not None:
            self._file.close()
            self._file = None

    def __del__(self) -> None:
        # the file is opened lazily (per process) and otherwise left to GC
        self.close()

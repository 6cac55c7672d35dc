"""RecordIO reader against a test-local writer written from the format spec."""
import os
import struct

import numpy as np
import pytest

from mmfacekd.datasets import (
    IndexedRecordReader,
    IndexedRecordWriter,
    IRHeader,
    RecordIOError,
    pack_record,
    unpack_record,
)
from mmfacekd.datasets.recordio import encode_record_chunks

MAGIC = 0xced7230a


def spec_write(path_rec, path_idx, payloads):
    """Independent writer: dmlc's aligned scan, one byte position at a time."""
    magic = struct.pack('<I', MAGIC)
    with open(path_rec, 'wb') as rec, open(path_idx, 'w') as idx:
        for key, data in payloads.items():
            idx.write(f'{key}\t{rec.tell()}\n')
            dptr = 0
            lower = len(data) // 4 * 4
            for i in range(0, lower, 4):
                if data[i:i + 4] == magic:
                    flag = 1 if dptr == 0 else 2
                    rec.write(
                        struct.pack('<II', MAGIC, (flag << 29) | (i - dptr)))
                    rec.write(data[dptr:i])
                    dptr = i + 4
            flag = 3 if dptr else 0
            rec.write(
                struct.pack('<II', MAGIC,
                            (flag << 29) | (len(data) - dptr)))
            rec.write(data[dptr:])
            pad = (4 - len(data) % 4) % 4
            rec.write(b'\x00' * pad)


def header_bytes(flag, label, id1=0, id2=0):
    return struct.pack('<IfQQ', flag, label, id1, id2)


@pytest.fixture
def payloads():
    magic = struct.pack('<I', MAGIC)
    rng = np.random.default_rng(0)
    body = rng.integers(0, 255, 37, dtype=np.uint8).tobytes()
    return {
        0: header_bytes(2, 0.0) + np.array([3, 5], np.float32).tobytes(),
        1: header_bytes(0, 7.0, 1) + b'plainjpeg',
        # magic at aligned offsets 24 (right after the header), 32, 36 and
        # at an unaligned offset 50 (not split)
        2: header_bytes(0, 3.0, 2) + magic + b'abcd' + magic + magic + b'xyz'
        + magic + body,
        # payload ending with the magic at an aligned offset
        3: header_bytes(0, 1.0, 3) + b'1234' + magic,
    }


def test_reader_joins_split_records(tmp_path, payloads):
    rec, idx = str(tmp_path / 'a.rec'), str(tmp_path / 'a.idx')
    spec_write(rec, idx, payloads)
    raw = open(rec, 'rb').read()
    # the spec writer really split record 2: cflags 1, 2, 2, 3 are present
    flags = []
    off = int(open(idx).read().splitlines()[2].split('\t')[1])
    while True:
        magic, lrec = struct.unpack_from('<II', raw, off)
        assert magic == MAGIC
        flags.append(lrec >> 29)
        off += 8 + ((lrec & ((1 << 29) - 1)) + 3) // 4 * 4
        if flags[-1] in (0, 3):
            break
    assert flags == [1, 2, 2, 3]
    reader = IndexedRecordReader(idx, rec)
    for key, data in payloads.items():
        assert reader.read(key) == data


def test_library_writer_matches_spec_writer(tmp_path, payloads):
    spec_write(str(tmp_path / 'a.rec'), str(tmp_path / 'a.idx'), payloads)
    with IndexedRecordWriter(str(tmp_path / 'b.idx'),
                             str(tmp_path / 'b.rec')) as w:
        for key, data in payloads.items():
            w.write(key, data)
    for ext in ('rec', 'idx'):
        assert (tmp_path / f'a.{ext}').read_bytes() == \
            (tmp_path / f'b.{ext}').read_bytes()


def test_header_pack_unpack():
    h, img = unpack_record(pack_record(IRHeader(0, 5.0, 9, 0), b'img'))
    assert (h.flag, h.label, h.id, img) == (0, 5.0, 9, b'img')
    h, img = unpack_record(
        pack_record(IRHeader(2, np.array([1, 4], np.float32), 0, 0), b'z'))
    assert h.flag == 2 and list(h.label) == [1, 4] and img == b'z'


def test_bad_magic_names_file_and_key(tmp_path, payloads):
    rec, idx = str(tmp_path / 'a.rec'), str(tmp_path / 'a.idx')
    spec_write(rec, idx, payloads)
    lines = open(idx).read().splitlines()
    lines[1] = '1\t' + str(int(lines[1].split('\t')[1]) + 4)
    open(idx, 'w').write('\n'.join(lines) + '\n')
    reader = IndexedRecordReader(idx, rec)
    with pytest.raises(RecordIOError,
                       match=r'a\.rec, record key 1.*bad magic'):
        reader.read(1)


def test_offset_past_end_and_garbage_index(tmp_path, payloads):
    rec, idx = str(tmp_path / 'a.rec'), str(tmp_path / 'a.idx')
    spec_write(rec, idx, payloads)
    with open(idx, 'a') as f:
        f.write(f'9\t{os.path.getsize(rec) + 100}\n')
    with pytest.raises(RecordIOError, match='key 9 points at offset'):
        IndexedRecordReader(idx, rec)
    open(idx, 'w').write('0\t0\nnot-a-line\n')
    with pytest.raises(RecordIOError, match='line 2'):
        IndexedRecordReader(idx, rec)
    with pytest.raises(FileNotFoundError, match='missing.idx'):
        IndexedRecordReader(str(tmp_path / 'missing.idx'), rec)


def test_truncated_rec(tmp_path, payloads):
    rec, idx = str(tmp_path / 'a.rec'), str(tmp_path / 'a.idx')
    spec_write(rec, idx, payloads)
    raw = open(rec, 'rb').read()
    last = int(open(idx).read().splitlines()[-1].split('\t')[1])
    open(rec, 'wb').write(raw[:last + 10])
    with pytest.raises(RecordIOError, match='truncated'):
        IndexedRecordReader(idx, rec).read(3)


def test_encode_chunks_no_magic_is_single_record():
    data = b'x' * 10
    framed = encode_record_chunks(data)
    assert struct.unpack_from('<II', framed) == (MAGIC, 10)
    assert len(framed) == 8 + 12

"""Fuzzing of the dataset file parsers with hypothesis.

Each target starts from a tiny valid file (RecordIO ``.rec``/``.idx``/
``property``, verification ``.bin``, IJB meta files, identification lists)
and parses random, truncated, bit-flipped or line-edited versions of it:
every case must parse or raise a ``ValueError`` (``RecordIOError``, …)
naming the file (and the record key for the ``.rec``), within 2 s and
without large allocations. The targets and mutations are those of
tools/analysis/fuzz_parsers.py, which runs 5,000 cases per target; here a
few dozen each, derandomized so that every run checks the same cases.
"""
import importlib.util
import os.path as osp
import pickle
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from mmfacekd.datasets.mx_record_dataset import MXRecordDataset
from mmfacekd.datasets.recordio import (
    MAGIC,
    IndexedRecordReader,
    IndexedRecordWriter,
    IRHeader,
    RecordIOError,
    pack_record,
    unpack_record,
)
from mmfacekd.datasets.verification_bin import load_verification_bin

from conftest import ROOT


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'mmfacekd_fuzz_parsers',
        osp.join(ROOT, 'tools', 'analysis', 'fuzz_parsers.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _load_tool()

#: hypothesis cases per target in the test suite (the tool: 5,000 each)
CASES = {
    'recordio.rec': 100, 'recordio.idx': 60, 'recordio.property': 30,
    'verification.bin': 100, 'ijb.pts': 50, 'ijb.tid': 40, 'ijb.pairs': 50,
    'ident.probe': 50, 'ident.distractor': 40,
}
#: a parse of these KiB-sized files allocating more is "unbounded"
SMALL = 4 << 20


@pytest.fixture(scope='module')
def traced():
    """tracemalloc on for the module (allocation peaks are checked)."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    yield
    if started:
        tracemalloc.stop()


@pytest.fixture(scope='module')
def targets(tmp_path_factory, traced):
    return fuzz.make_targets(str(tmp_path_factory.mktemp('fuzz')))


def test_every_target_is_fuzzed(targets):
    assert set(CASES) == set(targets)


def test_valid_files_parse(targets):
    for target in targets.values():
        for i, base in enumerate(target.bases):
            assert fuzz.apply_ops(base, ()) == base
            out = fuzz.run_case(target, i, base)
            assert out.kind == 'ok', (target.name, i, out.detail)


@pytest.mark.parametrize('name', list(CASES))
def test_parser_survives_mutations(targets, name):
    target = targets[name]

    @settings(max_examples=CASES[name], deadline=2000, derandomize=True,
              database=None,
              suppress_health_check=[HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(fuzz.mutations(target))
    def check(mutation):
        base, ops = mutation
        out = fuzz.run_case(target, base,
                            fuzz.apply_ops(target.bases[base], ops))
        assert out.kind != 'bad', out.detail

    check()


# ----------------------------------------------------------------------
# announced sizes are checked before anything is allocated
# ----------------------------------------------------------------------


def _peak_of(fn, *args):
    """Run ``fn``; return (its exception, its tracemalloc peak)."""
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - returned for the asserts
        err = e
    else:
        err = None
    return err, tracemalloc.get_traced_memory()[1] - before


def _write_set(root, record0: bytes, image: bytes) -> None:
    with IndexedRecordWriter(str(root / 'train.idx'),
                             str(root / 'train.rec')) as w:
        w.write(0, record0)
        w.write(1, image)


def test_huge_label_count_is_not_allocated(tmp_path, traced):
    # an IRHeader announcing 2**31 (and 2**32 - 1) float32 labels: 8 GiB
    for flag in (2**31, 2**32 - 1):
        payload = struct.pack('<IfQQ', flag, 0.0, 1, 0) + b'\xff\xd8jpeg'
        err, peak = _peak_of(unpack_record, payload, 'x.rec, record key 1')
        assert isinstance(err, RecordIOError) and peak < SMALL
        assert f'x.rec, record key 1: IRHeader says {flag} labels' in str(err)
        assert 're-create it' in str(err)
    # through the dataset: an image record, then record 0 itself
    head = pack_record(IRHeader(2, np.array([2, 2], np.float32), 0, 0), b'')
    huge = struct.pack('<IfQQ', 2**31, 0.0, 1, 0) + b'img'
    _write_set(tmp_path, head, huge)
    ds = MXRecordDataset(str(tmp_path))
    err, peak = _peak_of(ds.get_data_info, 0)
    assert isinstance(err, RecordIOError) and peak < SMALL
    assert f'{tmp_path}/train.rec, record key 1: IRHeader says 2147483648 ' \
        'labels but the payload has only 27 bytes' in str(err)
    _write_set(tmp_path, huge, huge)
    err, peak = _peak_of(MXRecordDataset, str(tmp_path))
    assert isinstance(err, RecordIOError) and peak < SMALL
    assert 'train.rec, record key 0: IRHeader says 2147483648' in str(err)


def test_huge_key_range_of_record_0_is_not_allocated(tmp_path, traced):
    # record 0 announcing image keys 1 .. 3e38 / 2**31 (np.arange: GiBs)
    for a in (3e38, 2.0**31):
        _write_set(tmp_path, pack_record(
            IRHeader(2, np.array([a, a], np.float32), 0, 0), b''),
            pack_record(IRHeader(0, 0.0, 1, 0), b'img'))
        err, peak = _peak_of(MXRecordDataset, str(tmp_path))
        assert isinstance(err, RecordIOError) and peak < SMALL, err
        assert 'train.rec, record key 0 announces image keys' in str(err)
    for label in ([np.nan, 4], [3, 1], [5]):
        _write_set(tmp_path, pack_record(
            IRHeader(len(label), np.array(label, np.float32), 0, 0), b''),
            pack_record(IRHeader(0, 0.0, 1, 0), b'img'))
        with pytest.raises(RecordIOError,
                           match=r'train\.rec, record key 0: the header '
                           'record must carry'):
            MXRecordDataset(str(tmp_path))


def test_huge_record_length_is_not_read(tmp_path, traced):
    # lrec announcing 2**29 - 1 bytes (512 MiB) in a 40-byte file
    rec, idx = tmp_path / 'a.rec', tmp_path / 'a.idx'
    rec.write_bytes(struct.pack('<II', MAGIC, 2**29 - 1) + b'\x00' * 32)
    idx.write_text('7\t0\n')
    reader = IndexedRecordReader(str(idx), str(rec))
    err, peak = _peak_of(reader.read, 7)
    reader.close()
    assert isinstance(err, RecordIOError) and peak < SMALL
    assert f'{rec}, record key 7 (offset 0): record claims 536870911 ' \
        'bytes but the file ends first' in str(err)


def test_negative_and_garbage_index_lines(tmp_path):
    rec, idx = tmp_path / 'a.rec', tmp_path / 'a.idx'
    rec.write_bytes(struct.pack('<II', MAGIC, 0))
    for line in (b'1\t-8', b'-' + b'9' * 20 + b'\t0', b'9' * 20 + b'\t0'):
        idx.write_bytes(b'0\t0\n' + line + b'\n')
        with pytest.raises(RecordIOError,
                           match=r'a\.idx, line 2: key .* out of range'):
            IndexedRecordReader(str(idx), str(rec))
    idx.write_bytes(b'0\t0\n\xff\xfe\t4\n')
    with pytest.raises(RecordIOError, match=r'a\.idx, line 2: not UTF-8'):
        IndexedRecordReader(str(idx), str(rec))


def test_bin_length_fields_are_not_allocated(tmp_path, traced):
    path = tmp_path / 'x.bin'
    images = pickle.dumps(([b'ab', b'cd'], [True]), protocol=4)
    corrupt = [
        # BINBYTES of 4 GiB - 16, BINBYTES8 of 2**62, a 2**62-byte frame
        b'\x80\x04B' + struct.pack('<I', 2**32 - 16) + b'abc.',
        b'\x80\x04\x8e' + struct.pack('<Q', 2**62) + b'abc.',
        images[:3] + struct.pack('<Q', 2**62) + images[11:],
        # memo index 2**31 (the memo would grow to 16 GiB)
        b'\x80\x02]r' + struct.pack('<I', 2**31) + b'.',
    ]
    for data in corrupt:
        path.write_bytes(data)
        err, peak = _peak_of(load_verification_bin, str(path))
        assert type(err) is ValueError and peak < SMALL, (data, err)
        assert f'{path} is not a valid verification .bin' in str(err)
    path.write_bytes(pickle.dumps(([b'ab', 7], [True]), protocol=4))
    with pytest.raises(ValueError, match=r'x\.bin: image 1 is a int'):
        load_verification_bin(str(path))
    path.write_bytes(pickle.dumps((5, [True]), protocol=4))
    with pytest.raises(ValueError, match=r'x\.bin is not a valid'):
        load_verification_bin(str(path))

"""Fuzz the dataset file parsers with hypothesis (random, truncated and
bit-flipped bytes, and line edits of the text formats).

Parsers (one fuzz target per mutated file; each starts from a tiny valid
file written by :mod:`mmfacekd.datasets.synthetic` or the project's own
RecordIO writer, in a temporary folder):

  recordio.rec / .idx / property  ``MXRecordDataset`` (``IndexedRecordReader``
                                  + ``unpack_record``): index, record 0,
                                  every image and identity record
  verification.bin                ``load_verification_bin`` (the synthetic
                                  writer's protocol-4 pickle, a Python 2
                                  style protocol-2 one, a tiny protocol-4
                                  one)
  ijb.pts / ijb.tid / ijb.pairs   ``IJBDataset`` meta files (with
                                  ``check_files=False``: a listed image
                                  that is missing is a FileNotFoundError)
                                  and ``read_pair_file``
  ident.probe / ident.distractor  ``IdentificationDataset`` list files

A case is *ok* (parsed), a *clean error* (``ValueError`` or a subclass such
as ``RecordIOError`` whose message names the mutated file, and for the
``.rec`` the record key) or *bad*: any other exception, a ``ValueError``
not naming the file, a case taking more than ``--slow`` seconds of CPU
time (wall time depends on the load of a shared machine; a hard
``--hang`` limit interrupts it) or one whose Python/numpy allocations
(tracemalloc) peak above ``--max-mib``. Exits 1 if any case is bad.
tests/test_datasets/test_fuzz_parsers.py runs the same targets with a few
dozen cases each.

Example:
    python tools/analysis/fuzz_parsers.py --cases 5000
"""
import argparse
import contextlib
import os
import os.path as osp
import pickle
import pickletools
import re
import shutil
import signal
import struct
import sys
import tempfile
import time
import tracemalloc
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from mmfacekd.datasets.identification_set import IdentificationDataset
from mmfacekd.datasets.ijb import IJBDataset
from mmfacekd.datasets.mx_record_dataset import MXRecordDataset
from mmfacekd.datasets.recordio import (
    MAGIC,
    MAGIC_BYTES,
    IndexedRecordWriter,
    IRHeader,
    pack_record,
    unpack_record,
)
from mmfacekd.datasets.synthetic.identification_set import (
    write_identification_set,
)
from mmfacekd.datasets.synthetic.ijb_bundle import write_ijb_bundle
from mmfacekd.datasets.synthetic.synthetic_set import (
    PairSetSpec,
    write_pair_bin,
    write_train_rec,
)
from mmfacekd.datasets.verification_bin import load_verification_bin
from mmfacekd.evaluation.metrics.ijb import read_pair_file

#: the hard per-case limit (a hang is interrupted after it) and the limits
#: above which a finished case counts as bad
HANG_S = 10.0
SLOW_S = 2.0
MAX_MIB = 64.0

# ----------------------------------------------------------------------
# fuzz targets: tiny valid files and the parser calls
# ----------------------------------------------------------------------


@dataclass
class Target:
    """One kind of mutated file and the parser call that reads it.

    Base ``i`` is the valid content ``bases[i]`` of the file ``paths[i]``
    (each in its own folder next to the valid files it goes with); a case
    writes a mutation of one base there and calls ``parse(paths[i])``.
    ``hot[i]`` are offsets of structure (record headers, pickle opcodes)
    that byte mutations aim at half of the time. A clean error's message
    names the mutated file or one of ``peers(path)`` (the ``.rec``/``.idx``
    of a RecordIO pair) and contains ``must_match``.
    """
    name: str
    paths: List[str]
    bases: List[bytes]
    parse: Callable[[str], object]
    text: bool = False
    hot: List[List[int]] = field(default_factory=list)
    must_match: Optional[str] = None
    peers: Callable[[str], Sequence[str]] = lambda path: ()


def _tiny_png(value: int) -> bytes:
    img = np.full((4, 4, 3), value, np.uint8)
    return cv2.imencode('.png', img)[1].tobytes()


def write_split_recordio(out_dir: str) -> None:
    """A tiny insightface-layout RecordIO set (record 0, 3 images of 2
    identities, 2 identity records) whose payloads contain the magic at
    aligned offsets (split records, cflag 1/2/3) and a label array."""
    os.makedirs(out_dir, exist_ok=True)
    imgs = []
    for i in range(3):
        img = _tiny_png(40 * i)
        img += b'\x00' * (-len(img) % 4)
        if i != 1:  # split into 2 (i = 0) or 3 (i = 2) parts
            img += MAGIC_BYTES + b'tail' + (MAGIC_BYTES * (i // 2)) + b'z'
        imgs.append(img)
    labels = [0, 0, 1]
    with IndexedRecordWriter(osp.join(out_dir, 'train.idx'),
                             osp.join(out_dir, 'train.rec')) as w:
        w.write(0, pack_record(
            IRHeader(2, np.array([4, 6], np.float32), 0, 0), b''))
        for key, (img, label) in enumerate(zip(imgs, labels), 1):
            lab = (np.array([label, 7], np.float32) if key == 2
                   else float(label))
            w.write(key, pack_record(IRHeader(0, lab, key, 0), img))
        for ident, (start, end) in enumerate(((1, 3), (3, 4))):
            w.write(4 + ident, pack_record(
                IRHeader(2, np.array([start, end], np.float32), 0, 0), b''))
    with open(osp.join(out_dir, 'property'), 'w') as f:
        f.write('2,112,112')


def record_offsets(rec: bytes) -> List[int]:
    """Offsets of every chunk header and IRHeader of a valid ``.rec``."""
    hot, pos = [], 0
    while pos + 8 <= len(rec):
        _, lrec = struct.unpack_from('<II', rec, pos)
        length = lrec & ((1 << 29) - 1)
        hot += [pos, pos + 4, pos + 8]
        pos += 8 + length + (-length % 4)
    return hot


def pickle_offsets(data: bytes) -> List[int]:
    """Offsets of the opcodes of a valid pickle."""
    return [pos for _, _, pos in pickletools.genops(data)]


def py2_bin(bins: Sequence[bytes], issame: Sequence[bool]) -> bytes:
    """A ``.bin`` as Python 2 pickled it (protocol 2, ``str`` images:
    BINSTRING/SHORT_BINSTRING), like insightface's original releases."""
    out = [b'\x80\x02(]q\x00(']
    for b in bins:
        out.append(b'U' + bytes([len(b)]) + b if len(b) < 256 else
                   b'T' + struct.pack('<i', len(b)) + b)
    out.append(b'e]q\x01(')
    out += [b'\x88' if s else b'\x89' for s in issame]
    out.append(b'et.')
    return b''.join(out)


def _read(path: str) -> bytes:
    with open(path, 'rb') as f:
        return f.read()


def _parse_recordio(path: str) -> None:
    ds = MXRecordDataset(osp.dirname(path))
    for i in range(len(ds)):
        ds.get_data_info(i)
    ds.get_gt_labels()
    for key in ds.reader.keys:  # identity records too
        unpack_record(ds.reader.read(key), f'{ds.rec_path}, record key {key}')
    ds.reader.close()


def _recordio_peers(path: str) -> Tuple[str, str]:
    root = osp.dirname(path)
    return osp.join(root, 'train.rec'), osp.join(root, 'train.idx')


def _parse_bin(path: str) -> None:
    bins, issame = load_verification_bin(path)
    for b in bins:  # what decode_face_image does first with each image
        np.frombuffer(b, np.uint8)
    assert all(type(s) is bool for s in issame)


def _parse_ijb(path: str) -> None:
    IJBDataset(osp.dirname(osp.dirname(path)), check_files=False,
               serialize_data=False).full_init()


def _parse_ident(path: str) -> None:
    IdentificationDataset(osp.dirname(path), probe_list='probe_list.txt',
                          distractor_list='distractor_list.txt',
                          serialize_data=False).full_init()


def _copies(root: str, name: str, folders: Sequence[str],
            rel: str) -> Tuple[List[str], List[bytes]]:
    """Copy each valid folder to ``root/name/<i>``; return the paths of
    ``rel`` in the copies and its valid contents."""
    paths, bases = [], []
    for i, folder in enumerate(folders):
        work = osp.join(root, name, str(i))
        shutil.copytree(folder, work)
        paths.append(osp.join(work, rel))
        bases.append(_read(paths[-1]))
    return paths, bases


def make_targets(root: str) -> Dict[str, Target]:
    """Write the tiny valid files under ``root``; return the targets."""
    targets: Dict[str, Target] = {}
    valid = osp.join(root, 'valid')
    # RecordIO: the synthetic writer (real JPEGs) and a split-record set
    rec_sets = [osp.join(valid, 'rec_split'), osp.join(valid, 'rec_synth')]
    write_split_recordio(rec_sets[0])
    os.makedirs(rec_sets[1])
    write_train_rec(rec_sets[1], num_ids=2, min_imgs=2, max_imgs=2, seed=1)
    for fname in ('train.rec', 'train.idx', 'property'):
        name = 'recordio.' + fname.split('.')[-1]
        paths, bases = _copies(root, name, rec_sets, fname)
        rec = fname == 'train.rec'
        targets[name] = Target(
            name, paths, bases, _parse_recordio, text=not rec,
            hot=[record_offsets(b) for b in bases] if rec else [],
            must_match=r'key \d+' if rec else None, peers=_recordio_peers)
    # verification .bin: protocol 4 (synthetic writer, real JPEGs) and
    # tiny images pickled by Python 2 (protocol 2) and 3 (protocol 4)
    tiny = [_tiny_png(i) for i in range(4)]
    bins = []
    for i in range(3):
        folder = osp.join(valid, f'bin{i}')
        os.makedirs(folder)
        bins.append(folder)
        path = osp.join(folder, 'fuzz.bin')
        if i == 0:
            write_pair_bin(path, PairSetSpec('fuzz', 3), 100000, 2, seed=1)
            continue
        with open(path, 'wb') as f:
            f.write(py2_bin(tiny, [True, False]) if i == 1 else
                    pickle.dumps((tiny, [True, False]), protocol=4))
    paths, bases = _copies(root, 'verification.bin', bins, 'fuzz.bin')
    targets['verification.bin'] = Target(
        'verification.bin', paths, bases, _parse_bin,
        hot=[pickle_offsets(b) for b in bases])
    # IJB bundle meta files (the images are not needed: check_files=False)
    ijb = osp.join(valid, 'ijb')
    write_ijb_bundle(ijb, num_ids=2, templates_per_id=(1, 2),
                     media_per_template=(1, 2), imgs_per_media=(1, 2),
                     seed=1)
    shutil.rmtree(osp.join(ijb, 'loose_crop'))
    for name, kind in (('ijb.pts', 'name_5pts_score'),
                       ('ijb.tid', 'face_tid_mid'),
                       ('ijb.pairs', 'template_pair_label')):
        paths, bases = _copies(root, name, [ijb],
                               osp.join('meta', f'ijbc_{kind}.txt'))
        targets[name] = Target(
            name, paths, bases,
            read_pair_file if kind == 'template_pair_label' else _parse_ijb,
            text=True)
    # identification lists, with landmarks and without
    ident = [osp.join(valid, 'ident'), osp.join(valid, 'ident_plain')]
    write_identification_set(ident[0], num_probe_ids=2, probe_imgs=(2, 3),
                             num_distractor_ids=2, landmarks=True, seed=1)
    shutil.copytree(ident[0], ident[1])
    for fname, keep in (('probe_list.txt', 2), ('distractor_list.txt', 1)):
        lines = _read(osp.join(ident[0], fname)).splitlines()
        with open(osp.join(ident[1], fname), 'wb') as f:
            f.write(b''.join(b' '.join(line.split()[:keep]) + b'\n'
                             for line in lines))
    for name, fname in (('ident.probe', 'probe_list.txt'),
                        ('ident.distractor', 'distractor_list.txt')):
        paths, bases = _copies(root, name, ident, fname)
        targets[name] = Target(name, paths, bases, _parse_ident, text=True)
    return targets


# ----------------------------------------------------------------------
# mutations
# ----------------------------------------------------------------------

#: byte strings a mutation writes or inserts: lengths and counts at the
#: limits, the RecordIO magic, continuation flags, pickle length fields
INTERESTING_BYTES = [
    b'\x00', b'\xff', b'\x80', b'\x00' * 4, b'\xff' * 4, b'\xff' * 8,
    struct.pack('<I', 2**31), struct.pack('<I', 2**31 - 1),
    struct.pack('<I', 2**29 - 1), struct.pack('<I', 1 << 29),
    struct.pack('<I', (3 << 29) | 4), struct.pack('<I', (7 << 29) | 8),
    struct.pack('<I', MAGIC), struct.pack('<Q', 2**63 - 1),
    struct.pack('<I', 1), struct.pack('<I', 2), struct.pack('<i', -8),
    struct.pack('<f', float('nan')), struct.pack('<f', float('inf')),
    struct.pack('<f', -1.0), struct.pack('<f', 1.0), struct.pack('<f', 3e38),
    struct.pack('<f', 1e9), struct.pack('<f', 2.0**31),
    b'.', b'B', b'T', b'\x8e', b'\x95', b'c', b'R', b'(', b'e',
]
#: tokens a text mutation puts into a field
INTERESTING_TOKENS = [
    b'', b'0', b'1', b'2', b'3', b'12', b'40', b'-1', b'-8', b'+7',
    b'1e309', b'-1e309', b'nan', b'inf', b'NaN',
    b'9' * 40, b'-' + b'9' * 25, b'4294967296', b'2147483648', b'0x10',
    b'1_000', b'1.5', b'#', b'\t', b'\r', b'\x0b', b'\x00', b'\xff\xfe',
    b'\xc3\xa9', b'\xe0\xa5\xa7', b'a' * 300, b'../../x', b'/abs/p.jpg',
]


@st.composite
def _offset(draw, size: int, hot: Sequence[int]) -> int:
    if hot and draw(st.booleans()):
        return draw(st.sampled_from(hot)) + draw(st.integers(-2, 12))
    return draw(st.integers(0, max(size - 1, 0)))


def _chunk():
    return st.one_of(st.sampled_from(INTERESTING_BYTES),
                     st.binary(min_size=1, max_size=8))


@st.composite
def _byte_op(draw, size: int, hot: Sequence[int]) -> tuple:
    kind = draw(st.sampled_from(
        ['flip', 'flip', 'set', 'insert', 'delete', 'truncate']))
    if kind == 'truncate':
        return ('truncate', draw(_offset(size, hot)))
    pos = draw(_offset(size, hot))
    if kind == 'flip':
        return ('flip', pos, draw(st.integers(0, 7)))
    if kind == 'delete':
        return ('delete', pos, draw(st.integers(1, 16)))
    return (kind, pos, draw(_chunk()))


@st.composite
def _line_op(draw, lines: int) -> tuple:
    kind = draw(st.sampled_from(
        ['field', 'field', 'negate', 'drop_field', 'add_field',
         'drop_line', 'dup_line', 'swap_lines', 'new_line', 'join_lines']))
    i = draw(st.integers(0, max(lines, 1)))
    if kind in ('field', 'add_field'):
        token = draw(st.one_of(st.sampled_from(INTERESTING_TOKENS),
                               st.binary(max_size=6)))
        return (kind, i, draw(st.integers(0, 12)), token)
    if kind in ('drop_field', 'negate'):
        return (kind, i, draw(st.integers(0, 12)))
    if kind == 'swap_lines':
        return (kind, i, draw(st.integers(0, max(lines, 1))))
    if kind == 'new_line':
        words = st.lists(st.one_of(st.sampled_from(INTERESTING_TOKENS),
                                   st.binary(max_size=6)), max_size=13)
        return (kind, i, b' '.join(draw(words)))
    return (kind, i)


@st.composite
def mutations(draw, target: Target) -> Tuple[int, tuple]:
    """``(base index, ops)``: whole random bytes, a truncation, 1-4 byte
    edits (bit flips, writes, inserts, deletes) or, for text formats,
    1-4 line/field edits (which may be followed by a byte edit)."""
    b = draw(st.integers(0, len(target.bases) - 1))
    base = target.bases[b]
    hot = target.hot[b] if target.hot else []
    kinds = ['random', 'truncate', 'bytes', 'bytes']
    if target.text:
        kinds += ['lines', 'lines', 'lines']
    kind = draw(st.sampled_from(kinds))
    if kind == 'random':
        return b, (('random', draw(st.binary(max_size=2 * len(base)))),)
    if kind == 'truncate':
        return b, (('truncate', draw(st.integers(0, len(base)))),)
    ops = []
    if kind == 'lines':
        n = len(base.splitlines())
        ops += draw(st.lists(_line_op(n), min_size=1, max_size=4))
        if draw(st.booleans()):
            ops.append(draw(_byte_op(len(base), hot)))
    else:
        ops += draw(st.lists(_byte_op(len(base), hot), min_size=1,
                             max_size=4))
    return b, tuple(ops)


def _fields(line: bytes) -> List[bytes]:
    """Split keeping the separators: fields at even indices."""
    return re.split(rb'([ \t]+)', line)


def apply_ops(base: bytes, ops: Sequence[tuple]) -> bytes:
    """Apply :func:`mutations` ops; positions wrap around the current
    length."""
    data = bytearray(base)
    for op in ops:
        kind = op[0]
        if kind == 'random':
            data = bytearray(op[1])
        elif kind == 'truncate':
            del data[op[1]:]
        elif kind in ('flip', 'set', 'insert', 'delete'):
            if not data:
                continue
            pos = op[1] % len(data)
            if kind == 'flip':
                data[pos] ^= 1 << op[2]
            elif kind == 'set':
                data[pos:pos + len(op[2])] = op[2]
            elif kind == 'insert':
                data[pos:pos] = op[2]
            else:
                del data[pos:pos + op[2]]
        else:
            lines = bytes(data).split(b'\n')
            i = op[1] % len(lines)
            if kind in ('field', 'add_field', 'drop_field', 'negate'):
                parts = _fields(lines[i])
                j = 2 * (op[2] % ((len(parts) + 1) // 2))
                if kind == 'field':
                    parts[j] = op[3]
                elif kind == 'add_field':
                    parts[j:j] = [op[3], b' ']
                elif kind == 'negate':
                    parts[j] = b'-' + parts[j]
                else:
                    del parts[j:j + 2]
                lines[i] = b''.join(parts)
            elif kind == 'drop_line':
                del lines[i]
            elif kind == 'dup_line':
                lines.insert(i, lines[i])
            elif kind == 'swap_lines':
                j = op[2] % len(lines)
                lines[i], lines[j] = lines[j], lines[i]
            elif kind == 'new_line':
                lines.insert(i, op[2])
            elif kind == 'join_lines' and i + 1 < len(lines):
                lines[i:i + 2] = [lines[i] + b' ' + lines[i + 1]]
            data = bytearray(b'\n'.join(lines))
    return bytes(data)


# ----------------------------------------------------------------------
# running one case
# ----------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the per-case alarm (a BaseException, so that parsers'
    ``except Exception`` cannot swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Interrupt the block with :class:`Hang` after ``seconds`` (SIGALRM;
    a no-op outside the main thread or without ``setitimer``)."""
    def _raise(signum, frame):
        raise Hang()

    try:
        old = signal.signal(signal.SIGALRM, _raise)
    except (AttributeError, ValueError):  # no SIGALRM / not main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Outcome:
    """``kind``: ``'ok'``, ``'clean'`` or ``'bad'``."""
    kind: str
    detail: str = ''
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_mib: float = 0.0


def _message_problem(target: Target, path: str,
                     err: ValueError) -> Optional[str]:
    msg = str(err)
    if not any(p in msg for p in (path, *target.peers(path))):
        return f'does not name {path}'
    if target.must_match and not re.search(target.must_match, msg):
        return f'does not match {target.must_match!r}'
    return None


def run_case(target: Target, base: int, data: bytes,
             slow_s: float = SLOW_S, hang_s: float = HANG_S,
             max_mib: float = MAX_MIB) -> Outcome:
    """Write ``data`` over base ``base`` of ``target``, parse it and
    classify the outcome."""
    path = target.paths[base]
    with open(path, 'wb') as f:
        f.write(data)
    tracing = tracemalloc.is_tracing()
    if tracing:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        with warnings.catch_warnings(), time_limit(hang_s):
            warnings.simplefilter('ignore')
            target.parse(path)
        out = Outcome('ok')
    except Hang:
        out = Outcome('bad', f'hang: interrupted after {hang_s:g} s')
    except ValueError as e:
        problem = _message_problem(target, path, e)
        out = Outcome('bad' if problem else 'clean',
                      f'{type(e).__name__}: {e}'
                      + (f' [message {problem}]' if problem else ''))
    except Exception as e:  # noqa: BLE001 - every other type is a bug
        out = Outcome('bad', f'{type(e).__name__}: {e}')
    out.seconds = time.perf_counter() - t0
    out.cpu_seconds = time.process_time() - c0
    if tracing:
        out.peak_mib = (tracemalloc.get_traced_memory()[1] - before) / 2**20
    if out.kind != 'bad' and out.cpu_seconds > slow_s:
        out.kind, out.detail = 'bad', (f'slow: {out.cpu_seconds:.2f} s CPU '
                                       f'({out.detail or "ok"})')
    if out.kind != 'bad' and out.peak_mib > max_mib:
        out.kind, out.detail = 'bad', (f'allocated {out.peak_mib:.0f} MiB '
                                       f'({out.detail or "ok"})')
    return out


# ----------------------------------------------------------------------
# the benchmark-style run
# ----------------------------------------------------------------------


@dataclass
class Stats:
    cases: int = 0
    ok: int = 0
    clean: int = 0
    bad: List[Tuple[tuple, Outcome]] = field(default_factory=list)
    slowest: float = 0.0
    slowest_cpu: float = 0.0
    peak_mib: float = 0.0
    seconds: float = 0.0


def fuzz(target: Target, cases: int, **limits) -> Stats:
    """Run ``cases`` hypothesis-generated mutations of one target."""
    stats = Stats()

    @settings(max_examples=cases, deadline=None, derandomize=True,
              database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck),
              verbosity=Verbosity.quiet)
    @given(mutations(target))
    def run(mutation):
        b, ops = mutation
        out = run_case(target, b, apply_ops(target.bases[b], ops),
                       **limits)
        stats.cases += 1
        if out.kind == 'bad':
            stats.bad.append((mutation, out))
        else:
            setattr(stats, out.kind, getattr(stats, out.kind) + 1)
        stats.slowest = max(stats.slowest, out.seconds)
        stats.slowest_cpu = max(stats.slowest_cpu, out.cpu_seconds)
        stats.peak_mib = max(stats.peak_mib, out.peak_mib)

    t0 = time.perf_counter()
    run()
    stats.seconds = time.perf_counter() - t0
    return stats


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--cases', type=int, default=5000,
                   help='cases per fuzz target (default 5000)')
    p.add_argument('--targets', nargs='*', default=None,
                   help='target names (default: all)')
    p.add_argument('--slow', type=float, default=SLOW_S,
                   help='CPU seconds above which a case is bad')
    p.add_argument('--hang', type=float, default=HANG_S,
                   help='seconds after which a case is interrupted')
    p.add_argument('--max-mib', type=float, default=MAX_MIB,
                   help='tracemalloc peak (MiB) above which a case is bad')
    p.add_argument('--no-tracemalloc', action='store_true',
                   help='skip the allocation check (faster)')
    p.add_argument('--examples', type=int, default=3,
                   help='bad cases shown per target')
    args = p.parse_args(argv)
    root = tempfile.mkdtemp(prefix='fuzz_parsers_')
    try:
        targets = make_targets(root)
        names = args.targets or list(targets)
        unknown = sorted(set(names) - set(targets))
        if unknown:
            p.error(f'unknown targets {unknown}; choose from '
                    f'{sorted(targets)}')
        if not args.no_tracemalloc:
            tracemalloc.start()
        print(f'{args.cases} cases per target; bad = another exception '
              'type, a ValueError not naming the file (and the record key '
              f'for the .rec), > {args.slow:g} s CPU, or > '
              f'{args.max_mib:g} MiB allocated')
        print('| target | cases | ok | clean errors | bad | slowest case '
              '(CPU / wall) | peak alloc | time |')
        print('|---|---|---|---|---|---|---|---|')
        failures = {}
        for name in names:
            s = fuzz(targets[name], args.cases, slow_s=args.slow,
                     hang_s=args.hang, max_mib=args.max_mib)
            peak = ('-' if args.no_tracemalloc else
                    f'{s.peak_mib:.2f} MiB')
            print(f'| {name} | {s.cases} | {s.ok} | {s.clean} | '
                  f'{len(s.bad)} | {s.slowest_cpu * 1000:.0f} / '
                  f'{s.slowest * 1000:.0f} ms | {peak} | '
                  f'{s.seconds:.0f} s |', flush=True)
            if s.bad:
                failures[name] = s.bad
        for name, bad in failures.items():
            print(f'\n{name}: {len(bad)} bad cases, first ones:')
            for (b, ops), out in bad[:args.examples]:
                ops_text = repr(ops)
                if len(ops_text) > 300:
                    ops_text = ops_text[:300] + '...'
                print(f'  base {b}, ops {ops_text}\n    -> '
                      f'{out.detail[:400]}')
        return 1 if failures else 0
    finally:
        tracemalloc.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())

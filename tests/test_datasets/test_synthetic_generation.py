"""The synthetic evaluation suite: sizes of the defaults, fold balance and
determinism of ``tools/misc/make_synthetic_faces.py`` given ``--seed``."""
import hashlib
import os
import pickle
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from mmfacekd.datasets.synthetic import identification_set, ijb_bundle
from mmfacekd.datasets.synthetic.synthetic_set import (
    DEFAULT_PAIR_SETS,
    PairSetSpec,
    balanced_issame,
    fold_sizes,
    write_pair_bin,
)

TOOL = str(Path(__file__).resolve().parents[2] / 'tools' / 'misc' /
           'make_synthetic_faces.py')


def _tree_digest(root):
    """name -> sha256 of every file under ``root`` (meta.json included,
    except the tool's wall-clock time which is not written to disk)."""
    out = {}
    for dp, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dp, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(
                open(p, 'rb').read()).hexdigest()
    return out


def _run_tool(out, *args, monkeypatch):
    monkeypatch.setattr(sys, 'argv', [TOOL, str(out), *args])
    runpy.run_path(TOOL, run_name='__main__')


TINY = ('--identification', '--ijb', '--num-ids', '3', '--min-imgs', '2',
        '--max-imgs', '3', '--pairs', '12', '--val-ids', '5',
        '--probe-ids', '2', '--distractors', '3', '--ijb-ids', '2')


def test_same_seed_same_files_other_seed_differs(tmp_path, monkeypatch,
                                                 capsys):
    _run_tool(tmp_path / 'a', *TINY, '--seed', '5', '--workers', '1',
              monkeypatch=monkeypatch)
    _run_tool(tmp_path / 'b', *TINY, '--seed', '5', '--workers', '2',
              monkeypatch=monkeypatch)
    _run_tool(tmp_path / 'c', *TINY, '--seed', '6', '--workers', '1',
              monkeypatch=monkeypatch)
    capsys.readouterr()
    a, b, c = (_tree_digest(tmp_path / k) for k in 'abc')
    for part in ('train.rec', 'train.idx', 'property', 'synth_lfw.bin',
                 'synth_cfp.bin', 'synth_agedb.bin',
                 'identification/probe_list.txt',
                 'identification/distractor_list.txt',
                 'ijb/meta/ijbc_name_5pts_score.txt',
                 'ijb/meta/ijbc_face_tid_mid.txt',
                 'ijb/meta/ijbc_template_pair_label.txt',
                 'ijb/loose_crop/0.jpg'):
        assert part in a, part
    # identical, file for file, whatever the number of workers
    assert a == b
    # another seed: different images everywhere
    for part in ('train.rec', 'synth_lfw.bin', 'ijb/loose_crop/0.jpg',
                 'identification/probe/id00000/000.jpg'):
        assert a[part] != c[part], part


def test_fold_sizes_follow_kfold():
    assert fold_sizes(3000) == [300] * 10
    assert fold_sizes(6000) == [600] * 10
    assert fold_sizes(23) == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert fold_sizes(4) == [1, 1, 1, 1]
    assert sum(fold_sizes(12345)) == 12345


@pytest.mark.parametrize('n', [3000, 23, 40])
def test_every_fold_is_half_genuine(n):
    issame = np.array(balanced_issame(np.random.default_rng(0), n))
    assert len(issame) == n
    start = 0
    for size in fold_sizes(n):
        pos = int(issame[start:start + size].sum())
        assert abs(2 * pos - size) <= 1
        start += size
    assert abs(2 * int(issame.sum()) - n) <= 1
    # shuffled inside the folds, not alternating
    assert not np.array_equal(issame, np.arange(n) % 2 == 0)


def test_pair_bin_layout(tmp_path):
    path = str(tmp_path / 'p.bin')
    info = write_pair_bin(path, PairSetSpec('p', 20, 1.0), 0, 4, seed=1)
    with open(path, 'rb') as f:
        bins, issame = pickle.load(f)
    assert len(bins) == 40 and len(issame) == 20 and info['num_genuine'] == 10
    assert len(set(bins)) == 40  # every image is its own render
    for k in range(10):  # folds of 2: one genuine, one impostor each
        assert sorted(issame[2 * k:2 * k + 2]) == [False, True]


def test_default_sizes_support_the_reported_rates(tmp_path, monkeypatch):
    # verification: three sets of 3,000 pairs (10 folds of 300)
    assert [s.num_pairs for s in DEFAULT_PAIR_SETS] == [3000] * 3
    assert fold_sizes(DEFAULT_PAIR_SETS[0].num_pairs) == [300] * 10

    # the bundle / 1:N layouts of the defaults, without rendering
    monkeypatch.setattr(ijb_bundle, '_render_job',
                        lambda job: (b'', np.zeros((5, 2), np.float32)))
    monkeypatch.setattr(identification_set, '_render_jpeg',
                        lambda job: (b'', np.zeros((5, 2), np.float32)))
    ijb = ijb_bundle.write_ijb_bundle(str(tmp_path / 'ijb'))
    n_imp = ijb['num_pairs'] - ijb['num_genuine']
    # TPR@FPR=1e-4 rests on >= 10 false accepts; TPR has >= 1,000 genuine
    assert n_imp >= 100_000 and n_imp * 1e-4 >= 10
    assert ijb['num_impostor'] == n_imp
    assert ijb['num_genuine'] >= 1000
    labels = np.loadtxt(tmp_path / 'ijb' / 'meta' /
                        'ijbc_template_pair_label.txt', dtype=np.int64)
    assert len(labels) == ijb['num_pairs']
    assert len({(a, b) for a, b, _ in labels}) == len(labels)  # no repeats
    assert (labels[:, 0] < labels[:, 1]).all()

    ident = identification_set.write_identification_set(
        str(tmp_path / 'ident'))
    n = ident['num_probes'] * ident['num_distractors']
    assert n == ident['num_impostor_pairs']
    # the reported FPR 1e-4 rests on ~100 false accepts (1e-5 on ~10)
    assert n >= 900_000 and n * 1e-4 >= 90
    assert ident['num_genuine_pairs'] >= 1000

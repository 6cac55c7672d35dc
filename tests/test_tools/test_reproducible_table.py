"""Same machine + same seed => the same summary table, byte for byte.

A tiny student is trained twice through the real MMEngine Runner
(``randomness=dict(seed=0, deterministic=True)``) on the tiny synthetic set
and tested on its two .bin pair sets; the metric reports bootstrap
intervals and dumps per-pair scores into each work dir. The two tables
(values + 95 % intervals) must be identical, and the paired comparison of
the two runs exactly zero.
"""
import os.path as osp

from mmengine.runner import Runner

from mmfacekd.evaluation import paired_comparison, summary_markdown

from conftest import TINY_IDS, tiny_config

STUDENT = 'configs/demo/arcface_mbf_synth.py'


def _train_and_test(data_root, work_dir):
    cfg = tiny_config(STUDENT, data_root, work_dir, epochs=1,
                      randomness=dict(seed=0, deterministic=True))
    cfg.model.head.num_classes = TINY_IDS
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_evaluator = dict(type='VerificationMetric', n_bootstrap=200)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner.test()


def test_same_seed_same_table(tiny_synth, tmp_path):
    a = _train_and_test(tiny_synth, str(tmp_path / 'a'))
    b = _train_and_test(tiny_synth, str(tmp_path / 'b'))
    for key in ('synth_lfw/accuracy', 'mean/accuracy'):
        assert f'{key}_ci_low' in a and a[f'{key}_ci_low'] <= a[key] <= \
            a[f'{key}_ci_high']
    # each run dumped its per-pair scores into its own work dir
    for run in ('a', 'b'):
        for s in ('synth_lfw', 'synth_cfp'):
            assert osp.isfile(tmp_path / run / 'scores' / f'{s}.npz')
    deltas = paired_comparison(str(tmp_path / 'b' / 'scores'),
                               str(tmp_path / 'a' / 'scores'),
                               n_bootstrap=200)
    assert deltas['mean/accuracy'] == (0.0, 0.0, 0.0)
    table_a = summary_markdown([('student', a), ('again', b)],
                               deltas=[None, deltas])
    table_b = summary_markdown([('student', b), ('again', b)],
                               deltas=[None, deltas])
    assert table_a == table_b
    assert '| +0.00 [+0.00, +0.00] |' in table_a
    assert ' [' in table_a.splitlines()[2]  # value [low, high] cells

"""Summary table: the papers' column order, then every other set."""
import json

from mmfacekd.evaluation import (
    PAPER_COLUMNS,
    summary_columns,
    summary_markdown,
    write_summary,
)


def test_paper_order_then_extras(tmp_path):
    a = {'lfw/accuracy': 99.5, 'calfw/accuracy': 95.0,
         'ijbc/tpr@fpr1e-4': 94.3, 'ijbc/tpr@fpr1e-5': 91.0,
         'ijbc/tpr@fpr1e-6': 80.0,  # not a paper column: extra
         'megaface/rank1': 95.5, 'calfw_mm/accuracy': 80.0,
         'calfw_mn/accuracy': 85.0, 'mean/accuracy': 97.25,
         'lfw/accuracy_std': 0.1, 'teacher/lfw/accuracy': 99.8}
    b = {'lfw/accuracy': 99.0, 'synth_ijb/tpr@fpr1e-4': 50.0}
    cols = summary_columns([a, b])
    assert [k for _, k in cols] == [
        'ijbc/tpr@fpr1e-4', 'ijbc/tpr@fpr1e-5', 'megaface/rank1',
        'lfw/accuracy', 'calfw/accuracy',
        'ijbc/tpr@fpr1e-6', 'synth_ijb/tpr@fpr1e-4',
        'calfw_mm/accuracy', 'calfw_mn/accuracy', 'mean/accuracy']
    assert cols[0][0] == 'IJB-C 1e-4' and cols[3][0] == 'LFW'
    table = summary_markdown([('A', a), ('B', b)], cols)
    lines = table.splitlines()
    assert lines[0].startswith('| model | IJB-C 1e-4 | IJB-C 1e-5 |')
    assert lines[3].startswith('| B | – | – | – | 99.00 |')
    write_summary([('A', a)], str(tmp_path / 's.md'), str(tmp_path / 's.json'))
    js = json.load(open(tmp_path / 's.json'))
    assert js['rows'][0]['name'] == 'A'
    assert js['rows'][0]['megaface/rank1'] == 95.5


def test_all_paper_columns_on_request():
    cols = summary_columns([{}], include_missing_paper_columns=True)
    assert cols == list(PAPER_COLUMNS)
    assert [t for t, _ in cols] == [
        'IJB-C 1e-4', 'IJB-C 1e-5', 'IJB-B 1e-4', 'IJB-B 1e-5',
        'MegaFace Id', 'MegaFace Ver', 'LFW', 'CFP-FP', 'CPLFW', 'AgeDB-30',
        'CALFW']


def test_interval_cells_delta_columns_and_seed_table():
    from mmfacekd.evaluation import seed_summary_markdown
    s = {'lfw/accuracy': 99.5, 'lfw/accuracy_ci_low': 99.1,
         'lfw/accuracy_ci_high': 99.8, 'mean/accuracy': 99.5,
         'mean/accuracy_ci_low': 99.1, 'mean/accuracy_ci_high': 99.8,
         'x_ijbc/tpr@fpr1e-4': 50.0}
    kd = dict(s, **{'lfw/accuracy': 99.7, 'mean/accuracy': 99.7})
    d = {'mean/accuracy': (0.2, -0.05, 0.45),
         'x_ijbc/tpr@fpr1e-4': (1.0, 0.25, 1.75),
         'lfw/accuracy': (0.2, -0.05, 0.45)}  # not a headline column
    table = summary_markdown([('student', s), ('KD', kd)],
                             deltas=[None, d])
    lines = table.splitlines()
    assert lines[0] == ('| model | LFW | x_ijbc/tpr@fpr1e-4 | '
                        'mean (verification) | Δ x_ijbc/tpr@fpr1e-4 vs '
                        'student | Δ mean (verification) vs student |')
    assert lines[2] == ('| student | 99.50 [99.10, 99.80] | 50.00 | '
                        '99.50 [99.10, 99.80] | – | – |')
    assert lines[3].endswith('| +1.00 [+0.25, +1.75] | '
                             '+0.20 [-0.05, +0.45] |')
    seeds = seed_summary_markdown([
        ('student', [s, dict(s, **{'lfw/accuracy': 99.3})], [None, None]),
        ('KD', [kd, kd], [d, dict(d, **{'mean/accuracy': (0.4, 0, 1)})]),
        ('FitNet', [kd], [d])])
    rows = seeds.splitlines()
    assert rows[0].startswith('| model | seeds | LFW | x_ijbc/tpr@fpr1e-4 |')
    assert '| student | 2 | 99.40 ± 0.14 | 50.00 ± 0.00 |' in rows[2]
    assert rows[3].endswith('| 1.00 ± 0.00 | 0.30 ± 0.14 |')
    assert rows[4].startswith('| FitNet | 1 | 99.70 [99.10, 99.80] | 50.00')

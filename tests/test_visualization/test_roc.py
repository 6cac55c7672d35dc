"""ROC plot: the drawn points are the IJB metric's roc_curve output, the
legend's TPR@FPR the metric's value; tools/analysis/plot_roc.py evaluates
two checkpoints on a tiny generated IJB bundle and reads score dumps."""
import importlib.util
import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import BaseDataElement

from mmfacekd.datasets.synthetic.ijb_bundle import write_ijb_bundle
from mmfacekd.evaluation import IJBMetric
from mmfacekd.evaluation.functional import roc_curve
from mmfacekd.registry import MODELS
from mmfacekd.visualization import (
    legend_label,
    load_ijb_scores,
    plot_roc_curves,
    roc_from_scores,
)

from conftest import ROOT

FPRS = (1e-2, 1e-1)


def _metric_on_random_templates(tmp_path, seed: int, name: str):
    """IJBMetric on random embeddings of 30 templates (2 images each);
    returns its metrics and the folder of its score dump."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(10), 3)  # 3 templates per identity
    centers = rng.normal(size=(10, 16))
    samples = []
    for tid, ident in enumerate(ids):
        for j in range(2):
            ds = BaseDataElement(metainfo=dict(
                sample_idx=len(samples), set_name='ijbc', eval_protocol='ijb',
                face_score=float(rng.uniform(0.5, 1)), template_id=tid,
                media_id=2 * tid + j))
            ds.pred_embedding = torch.tensor(
                centers[ident] + rng.normal(size=16) * 1.5,
                dtype=torch.float32)
            samples.append(ds)
    pairs = tmp_path / f'pairs_{name}.txt'
    pairs.write_text(''.join(
        f'{a} {b} {int(ids[a] == ids[b])}\n'
        for a in range(len(ids)) for b in range(a + 1, len(ids))))
    for ds in samples:  # as IJBDataset does
        ds.set_metainfo(dict(pair_file=str(pairs)))
    scores_dir = tmp_path / name
    metric = IJBMetric(fprs=FPRS, ci_level=None, scores_dir=str(scores_dir))
    metric.process({}, samples)
    return metric.compute_metrics(metric.results), str(scores_dir)


def test_plotted_points_and_legend_are_the_metrics(tmp_path):
    curves, metrics = [], []
    for seed, name in ((0, 'a'), (1, 'b')):
        m, folder = _metric_on_random_templates(tmp_path, seed, name)
        set_name, scores, labels = load_ijb_scores(folder)
        assert set_name == 'ijbc' and len(scores) == 30 * 29 // 2
        curves.append(roc_from_scores(name, scores, labels, FPRS))
        metrics.append((m, scores, labels))
    fig = plot_roc_curves(curves, str(tmp_path / 'roc.png'))
    ax = fig.axes[0]
    lines = [ln for ln in ax.lines if not ln.get_label().startswith('_')]
    assert len(lines) == 2 and ax.get_xscale() == 'log'
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    for line, text, curve, (m, scores, labels) in zip(lines, legend, curves,
                                                      metrics):
        fpr, tpr, _ = roc_curve(scores, labels)
        keep = fpr > 0
        np.testing.assert_array_equal(line.get_xdata(), fpr[keep])
        np.testing.assert_array_equal(line.get_ydata(), tpr[keep] * 100)
        assert text == legend_label(curve)
        for key in ('1e-2', '1e-1'):
            assert f'TPR@{key} = {m[f"ijbc/tpr@fpr{key}"]:.2f} %' in text
            assert curve.tpr_at[float(key)] * 100 == m[f'ijbc/tpr@fpr{key}']
    assert (tmp_path / 'roc.png').stat().st_size > 10000


def test_score_dump_errors(tmp_path):
    np.savez(tmp_path / 'lfw.npz', protocol=np.array('verification'),
             dist=np.zeros(3))
    with pytest.raises(FileNotFoundError, match='IJB sets here: none'):
        load_ijb_scores(str(tmp_path))
    with pytest.raises(ValueError, match='not an IJB score dump'):
        load_ijb_scores(str(tmp_path / 'lfw.npz'))
    for name in ('ijbb', 'ijbc'):
        np.savez(tmp_path / f'{name}.npz', protocol=np.array('ijb'),
                 scores=np.array([0.1, 0.9]), labels=np.array([0, 1]))
    with pytest.raises(FileNotFoundError, match='pass --set'):
        load_ijb_scores(str(tmp_path))
    assert load_ijb_scores(str(tmp_path), 'ijbb')[0] == 'ijbb'


def _tool():
    spec = importlib.util.spec_from_file_location(
        'plot_roc', f'{ROOT}/tools/analysis/plot_roc.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tool_evaluates_checkpoints_on_a_generated_ijb_set(tmp_path):
    bundle = str(tmp_path / 'ijb')
    write_ijb_bundle(bundle, num_ids=4, templates_per_id=(2, 3),
                     media_per_template=(1, 1), imgs_per_media=(1, 2),
                     impostor_ratio=4, seed=3)  # 18 images, 60 pairs
    cfg_path = tmp_path / 'mbf_ijb.py'
    cfg_path.write_text(
        f"_base_ = ['{ROOT}/configs/demo/arcface_mbf_synth.py']\n"
        'test_dataloader = dict(batch_size=32, num_workers=0, '
        'persistent_workers=False, dataset=dict(_delete_=True, '
        f"type='IJBDataset', data_root='{bundle}', name='ijbc', "
        "set_name='tiny_ijb', pipeline=[dict(type='LoadFaceImage', "
        "to_rgb=True), dict(type='AlignFace'), dict(type='PackFaceInputs')]))"
        "\ntest_evaluator = dict(_delete_=True, type='IJBMetric', "
        "set_name='tiny_ijb', fprs=(1e-2, 1e-1))\n")
    specs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = MODELS.build(Config.fromfile(str(cfg_path)).model)
        ckpt = tmp_path / f'm{seed}.pth'
        torch.save(dict(state_dict=model.state_dict()), ckpt)
        specs += ['--ckpt', f'm{seed}={cfg_path}:{ckpt}']
    out = tmp_path / 'roc.png'
    _tool().main(specs + ['--fprs', '1e-2', '1e-1', '--out', str(out),
                          '--work-dir', str(tmp_path / 'work')])
    report = json.loads((tmp_path / 'roc.json').read_text())
    assert out.stat().st_size > 10000
    for name in ('m0', 'm1'):
        r = report[name]
        assert r['set'] == 'tiny_ijb'
        for key in ('1e-2', '1e-1'):  # legend value == the Runner's metric
            assert r['tpr_at_fpr'][key] == r['metric'][
                f'tiny_ijb/tpr@fpr{key}']
        dumped = np.load(r['scores'])
        assert r['pairs'] == len(dumped['scores'])
    # the two random models score differently
    assert report['m0']['pairs'] == report['m1']['pairs']
    assert not np.array_equal(np.load(report['m0']['scores'])['scores'],
                              np.load(report['m1']['scores'])['scores'])
    # the same dumps again, as saved score files
    _tool().main(['--scores', f"a={tmp_path / 'work' / 'm0' / 'scores'}",
                  '--fprs', '1e-2', '1e-1', '--out',
                  str(tmp_path / 'again.png')])
    again = json.loads((tmp_path / 'again.json').read_text())
    assert again['a']['tpr_at_fpr'] == report['m0']['tpr_at_fpr']

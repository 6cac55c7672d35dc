"""GKD Fig. 1: the marked split is k of eq. 3, computed here by hand from
the softmax (sort, cumsum, first argmin of |cum - tau|, docs/papers.md §1),
the curves are the softened predictions in the ranking order, the PNG is
written; tools/analysis/plot_gkd_predictions.py gives the same curves for a
teacher + student pair and for a distiller config + checkpoint."""
import importlib.util
import json

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from mmengine.config import Config

from mmfacekd.registry import MODELS
from mmfacekd.visualization import (
    SPLIT_GID,
    gkd_prediction,
    plot_gkd_prediction,
)

from conftest import ROOT, TINY_IDS


def hand_k(logits: np.ndarray, tau: float, temperature: float) -> int:
    """Eq. 3: k = first argmin_k |sum_{i<=k} p~_i - tau|, float64."""
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    cum = np.cumsum(-np.sort(-p, kind='stable'))
    return int(np.argmin(np.abs(cum - tau))) + 1


def softened(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.mark.parametrize('rank_by', ['teacher', 'student'])
@pytest.mark.parametrize('tau,temperature,scale', [
    (0.93, 4.0, 32.0), (0.999, 4.0, 32.0), (0.5, 1.0, 8.0), (0.93, 1.0, 64.)])
def test_split_is_eq3_k_and_curves_are_the_softmax(tmp_path, rank_by, tau,
                                                   temperature, scale):
    rng = np.random.default_rng(int(tau * 1000) + int(scale))
    num_classes = 300
    t = rng.normal(0, 0.1, num_classes) * scale
    t[7] += 0.6 * scale  # a confident teacher
    s = t + rng.normal(0, 0.05, num_classes) * scale
    pred = gkd_prediction(torch.tensor(s), torch.tensor(t)[None], tau,
                          temperature, rank_by, gt_label=7)
    rank = t if rank_by == 'teacher' else s
    k = hand_k(rank, tau, temperature)
    assert pred.k == k
    # "first cumulative sum >= tau" is eq. 3's k or one more (closest wins)
    cum = np.cumsum(np.sort(softened(rank, temperature))[::-1])
    k_ge = int(np.argmax(cum >= tau - 1e-12)) + 1
    assert k in (k_ge - 1, k_ge)

    p_t, p_s = softened(t, temperature), softened(s, temperature)
    order = np.argsort(-rank, kind='stable')
    np.testing.assert_array_equal(pred.order, order)
    np.testing.assert_allclose(pred.teacher, p_t[order], rtol=1e-12)
    np.testing.assert_allclose(pred.student, p_s[order], rtol=1e-12)
    assert pred.p_phi_t == pytest.approx(p_t[order[:k]].sum(), rel=1e-12)
    assert pred.target_rank == int(np.flatnonzero(order == 7)[0]) + 1

    out = tmp_path / 'fig.png'
    fig = plot_gkd_prediction(pred, str(out))
    ax = fig.axes[0]
    (split, ) = [ln for ln in ax.lines if ln.get_gid() == SPLIT_GID]
    assert set(split.get_xdata()) == {k + 0.5}  # between rank k and k + 1
    teacher_line = [ln for ln in ax.lines if 'teacher' in ln.get_label()][0]
    np.testing.assert_array_equal(teacher_line.get_xdata(),
                                  np.arange(1, num_classes + 1))
    np.testing.assert_allclose(teacher_line.get_ydata(), p_t[order])
    assert f'$k$ = {k} of {num_classes}' in ax.get_title()
    assert f'{p_t[order[:k]].sum():.3f}' in ax.get_title()
    assert ax.get_yscale() == 'log'
    assert imread(str(out)).shape[:2] == (462, 770)  # 7 x 4.2 in at 110 dpi


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match='differ in classes'):
        gkd_prediction(torch.zeros(5), torch.zeros(6))
    with pytest.raises(ValueError, match='one sample'):
        gkd_prediction(torch.zeros(2, 5), torch.zeros(2, 5))
    with pytest.raises(ValueError, match='rank_by'):
        gkd_prediction(torch.zeros(5), torch.zeros(5), rank_by='both')


def _tool():
    spec = importlib.util.spec_from_file_location(
        'plot_gkd_predictions',
        f'{ROOT}/tools/analysis/plot_gkd_predictions.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _random_checkpoint(config: str, path) -> dict:
    cfg = Config.fromfile(f'{ROOT}/{config}')
    cfg.model.head.num_classes = TINY_IDS
    torch.manual_seed(len(config))
    state = MODELS.build(cfg.model).state_dict()
    torch.save(dict(state_dict=state), path)
    return state


def test_tool_pair_and_distiller_forms_agree(tiny_synth, tmp_path):
    teacher = tmp_path / 'teacher.pth'
    student = tmp_path / 'student.pth'
    _random_checkpoint('configs/demo/arcface_r18_synth.py', teacher)
    state = _random_checkpoint('configs/demo/arcface_mbf_synth.py', student)
    distiller = tmp_path / 'distiller.pth'
    torch.save(dict(state_dict={f'student.{k}': v for k, v in state.items()
                                }), distiller)
    tool = _tool()
    data = f'train_dataloader.dataset.data_root={tiny_synth}'
    pair, dist = tmp_path / 'pair.json', tmp_path / 'dist.json'
    tool.main([f'{ROOT}/configs/demo/arcface_r18_synth.py', str(teacher),
               f'{ROOT}/configs/demo/arcface_mbf_synth.py', str(student),
               '--sample-idx', '5', '--out', str(tmp_path / 'pair.png'),
               '--json', str(pair), '--cfg-options', data,
               f'model.head.num_classes={TINY_IDS}'])
    tool.main([f'{ROOT}/configs/demo/gkd_r18_mbf_synth.py', str(distiller),
               '--sample-idx', '5', '--out', str(tmp_path / 'dist.png'),
               '--json', str(dist), '--cfg-options', data,
               f'model.teacher_ckpt={teacher}',
               f'model.student.head.num_classes={TINY_IDS}',
               f'model.teacher.head.num_classes={TINY_IDS}'])
    a, b = json.loads(pair.read_text()), json.loads(dist.read_text())
    # defaults: the project's GKD loss (configs/_base_/losses/gkd.py)
    assert (a['tau'], a['temperature'], a['logits']) == (0.93, 4.0, 'margin')
    assert (b['tau'], b['temperature'], b['logits']) == (0.93, 4.0, 'margin')
    assert a['order'] == b['order'] and a['k'] == b['k']
    np.testing.assert_allclose(a['teacher'], b['teacher'], rtol=1e-6)
    np.testing.assert_allclose(a['student'], b['student'], rtol=1e-6)
    teacher_probs = np.array(a['teacher'])
    assert np.all(np.diff(teacher_probs) <= 0)  # ranked by the teacher
    cum = np.cumsum(teacher_probs)
    assert a['k'] == int(np.argmin(np.abs(cum - 0.93))) + 1
    assert a['p_phi_t'] == pytest.approx(cum[a['k'] - 1], rel=1e-9)
    assert (tmp_path / 'pair.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert (tmp_path / 'dist.png').stat().st_size > 10000

    with pytest.raises(SystemExit, match='FaceDistiller config'):
        tool.main([f'{ROOT}/configs/demo/arcface_mbf_synth.py',
                   str(student)])

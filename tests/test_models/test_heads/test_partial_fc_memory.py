"""The Partial FC memory model (mmfacekd/models/heads/partial_fc_memory.py)
against the live tensor bytes of real steps (torch.profiler memory events)
in one process and on 2 gloo ranks, at sizes other than the ones its buffer
counts were read from: within 10 %."""

import pytest
import torch
from spawn_utils import run_on_gloo

from mmfacekd.models.heads.partial_fc_memory import (
    measure_partial_fc_memory,
    partial_fc_memory,
)

#: (C, D, B_global, r): logit-bound and weight-bound, with and without
#: sampling
SIZES = [(12000, 128, 256, 1.0), (12000, 128, 256, 0.3),
         (12000, 512, 16, 1.0), (12000, 256, 64, 0.1)]
KEYS = ('student_step_peak', 'teacher_fwd_peak', 'loss_peak')


def _measure_all(rank, world):
    return [measure_partial_fc_memory(c, d, r, b // world)
            for c, d, b, r in SIZES]


@pytest.fixture(scope='module', params=[1, 2], ids=lambda w: f'world{w}')
def measured(request, tmp_path_factory):
    world = request.param
    if world == 1:
        return world, [_measure_all(0, 1)]
    out = tmp_path_factory.mktemp('mem')
    return world, run_on_gloo(_measure_all, world, out, pg_timeout=60)


def test_prediction_within_10_percent(measured):
    world, ranks = measured
    for rank, results in enumerate(ranks):
        for (c, d, b, r), got in zip(SIZES, results):
            pred = partial_fc_memory(c, d, world, r, b)
            assert got['kept_per_rank'] == pred['kept_per_rank']
            for key in KEYS:
                err = pred[key] / got[key] - 1
                assert abs(err) < 0.10, (world, rank, c, d, b, r, key, err)


def test_formula_by_hand():
    m = partial_fc_memory(85742, 512, 8, 1.0, 1024)
    rows = 10718  # ceil(85742 / 8)
    assert m['classes_per_rank'] == m['kept_per_rank'] == rows
    assert m['student_weight'] == m['student_grad'] == \
        m['student_momentum'] == m['teacher_weight'] == rows * 512 * 4
    assert m['student_logits'] == 4 * 4 * 1024 * rows
    assert m['loss_peak'] == int(7.0 * 4 * 1024 * rows)
    half = partial_fc_memory(85742, 512, 8, 0.1, 1024, dtype=torch.float16)
    assert half['kept_per_rank'] == 1071
    assert half['student_weight'] == rows * 512 * 2
    with pytest.raises(ValueError, match='sample_rate'):
        partial_fc_memory(10, 4, 1, 0.0, 4)

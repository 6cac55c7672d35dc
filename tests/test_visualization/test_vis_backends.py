"""Training curves reach MMEngine's visualizer: a real Runner trains GKD on
the tiny set with the config of configs/_base_/vis_backends/tensorboard.py;
every loss term of the model's loss dict and GKD's k / p_phi_t are in
LocalVisBackend's scalars.json and (when tensorboard is installed) in the
TensorBoard event file."""
import glob
import importlib.util
import json
import os.path as osp

import torch
from mmengine.dataset import pseudo_collate
from mmengine.runner import Runner

from conftest import ROOT, tiny_model_config

GKD = 'configs/demo/gkd_r18_mbf_synth.py'
TENSORBOARD = importlib.util.find_spec('tensorboard') is not None


def _leaf_config(tmp_path) -> str:
    """A user config that switches the TensorBoard backend on."""
    path = tmp_path / 'gkd_tb.py'
    path.write_text(
        f"_base_ = ['{ROOT}/{GKD}',\n"
        f"          '{ROOT}/configs/_base_/vis_backends/tensorboard.py']\n"
        'visualizer = dict(vis_backends={{_base_.tensorboard_vis_backends}})'
        '\n')
    return str(path)


def _loss_keys(runner) -> set:
    """The keys of the model's own loss dict on one training batch."""
    model = runner.model
    batch = pseudo_collate([runner.train_dataloader.dataset[i]
                            for i in range(4)])
    with torch.no_grad():
        data = model.data_preprocessor(batch, True)
        return set(model(**data, mode='loss'))


def test_every_loss_term_and_gkd_k_reach_the_visualizer(tiny_synth,
                                                         tmp_path):
    cfg = tiny_model_config(_leaf_config(tmp_path), tiny_synth,
                            str(tmp_path / 'work'), epochs=1,
                            model=dict(teacher_ckpt=None))
    assert [b['type'] for b in cfg.visualizer.vis_backends] == [
        'LocalVisBackend', 'TensorboardVisBackend']
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if not TENSORBOARD:
        cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    runner = Runner.from_cfg(cfg)
    runner.train()
    expected = _loss_keys(runner)
    # the loss dict itself: every term, GKD's regime quantities among them
    assert {'student.loss_cls', 'distill.loss_gkd', 'distill.gkd.k_mean',
            'distill.gkd.p_phi_t'} <= expected

    (scalars_file, ) = glob.glob(osp.join(runner.log_dir, 'vis_data',
                                          'scalars.json'))
    with open(scalars_file) as f:
        rows = [json.loads(line) for line in f]
    train_rows = [r for r in rows if 'lr' in r]
    assert len(train_rows) == len(rows) == len(runner.train_dataloader)
    for row in train_rows:
        assert expected <= set(row), sorted(expected - set(row))
        assert 1 <= row['distill.gkd.k_min'] <= row['distill.gkd.k_mean'] \
            <= row['distill.gkd.k_max'] <= 12
        assert 0 < row['distill.gkd.p_phi_t'] <= 1

    if TENSORBOARD:
        from tensorboard.backend.event_processing.event_accumulator import (
            EventAccumulator,
        )
        (events, ) = glob.glob(osp.join(runner.log_dir, 'vis_data',
                                        'events.out.tfevents.*'))
        acc = EventAccumulator(events)
        acc.Reload()
        tags = set(acc.Tags()['scalars'])
        assert expected <= tags, \
            sorted(expected - tags)
        k_tb = [e.value for e in acc.Scalars('distill.gkd.k_mean')]
        k_json = [r['distill.gkd.k_mean'] for r in train_rows]
        assert len(k_tb) == len(k_json)
        assert all(abs(a - b) < 1e-4 * max(1.0, abs(b))
                   for a, b in zip(k_tb, k_json))

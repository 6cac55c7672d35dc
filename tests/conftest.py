import copy
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(scope='session', autouse=True)
def _register_modules():
    import torch
    torch.set_num_threads(2)
    from mmfacekd.utils import register_all_modules
    register_all_modules(init_default_scope=True)


@pytest.fixture(scope='module')
def single_thread():
    """One intra-op thread for the module: small tensors run faster and do
    not depend on the load of a shared CPU. Opt in with
    ``pytestmark = pytest.mark.usefixtures('single_thread')``."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_IDS = 12


@pytest.fixture(scope='session')
def tiny_synth(tmp_path_factory):
    """A tiny synthetic set in the real formats (RecordIO + .bin)."""
    from mmfacekd.datasets.synthetic.synthetic_set import (
        PairSetSpec,
        make_synthetic_faces,
    )
    out = str(tmp_path_factory.mktemp('synthetic'))
    make_synthetic_faces(
        out, num_ids=TINY_IDS, min_imgs=4, max_imgs=6,
        pair_sets=(PairSetSpec('synth_lfw', 40, 0.8),
                   PairSetSpec('synth_cfp', 30, 1.2)),
        val_ids=10, seed=1)
    return out


def tiny_model_config(config: str, data_root: str, work_dir: str, **kw):
    """:func:`tiny_config` with the classification heads (a distiller's
    student and teacher heads, or the recognizer's) sized to the tiny set."""
    cfg = tiny_config(config, data_root, work_dir, **kw)
    model = cfg.model
    for head in ([model.student.head, model.teacher.head]
                 if model.type == 'FaceDistiller' else [model.head]):
        head.num_classes = TINY_IDS
    return cfg


def tiny_config(config: str, data_root: str, work_dir: str, epochs: int = 1,
                flip: bool = True, **overrides):
    """Load a demo config and shrink it to the tiny synthetic set."""
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(ROOT, config))
    cfg.work_dir = work_dir
    cfg.train_dataloader.dataset.data_root = data_root
    cfg.train_dataloader.batch_size = 8
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    if not flip:
        cfg.train_dataloader.dataset.pipeline = [
            t for t in cfg.train_dataloader.dataset.pipeline
            if 'RandomFlip' not in t['type']]
    # the test set of the demo configs is the whole synthetic suite; tests
    # that need it build it themselves, the rest test on the val sets
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    cfg.test_evaluator = cfg.val_evaluator
    for loader in ('val_dataloader', 'test_dataloader'):
        dl = cfg[loader]
        dl.num_workers = 0
        dl.persistent_workers = False
        dl.batch_size = 16
        dl.dataset.datasets = [
            dict(d, data_root=data_root) for d in dl.dataset.datasets
            if d['ann_file'] in ('synth_lfw.bin', 'synth_cfp.bin')]
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = epochs
    cfg.default_hooks.logger.interval = 1
    cfg.merge_from_dict(overrides)
    return cfg

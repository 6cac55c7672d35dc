"""The GKD Table 5 baseline configs (and their synthetic demos) build and give
finite losses in one forward pass."""
import os

import pytest
import torch
from mmengine.config import Config
from mmpretrain.structures import DataSample

from mmfacekd.registry import MODELS

from conftest import ROOT

pytestmark = pytest.mark.usefixtures('single_thread')


METHODS = ['fitnet', 'rkd', 'sp', 'cckd', 'darkrank', 'shrinkteanet',
           'triplet', 'margin_distillation']
NUM_CLASSES = 16  # the r50 heads (85742 classes) shrunk for speed


def _model_cfg(path, tmp_path):
    cfg = Config.fromfile(os.path.join(ROOT, path)).model
    cfg.teacher_ckpt = None
    # a random IResNet teacher in eval mode (unit running variances) blows its
    # raw embeddings up to ~1e26 over 24 blocks; identity residual branches
    # keep them O(1), as a trained teacher's are
    cfg.teacher.backbone.zero_init_residual = True
    if 'demo' not in path:
        cfg.student.head.num_classes = NUM_CLASSES
        cfg.teacher.head.num_classes = NUM_CLASSES
    for lcfg in cfg.distill_losses.values():
        if lcfg.type == 'MarginDistillationLoss':
            # stands in for the teacher checkpoint's classifier
            c = cfg.teacher.head.num_classes
            d = cfg.teacher.head.in_channels
            head = tmp_path / 'teacher.pth'
            torch.save(dict(state_dict={'head.weight': torch.randn(c, d)}),
                       head)
            assert lcfg.prototype_file.startswith('checkpoints/')
            lcfg.prototype_file = str(head)
            lcfg.num_classes = c
    return cfg


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('kind', ['r50', 'demo'])
def test_config_builds_and_forward_is_finite(method, kind, tmp_path):
    path = (f'configs/{method}/{method}_r50_mbf.py' if kind == 'r50' else
            f'configs/demo/{method}_r18_mbf_synth.py')
    torch.manual_seed(0)
    model = MODELS.build(_model_cfg(path, tmp_path))
    model.train()
    (name, ), = [tuple(model.distill_losses)]
    assert name.startswith(method.split('_')[0])
    gen = torch.Generator().manual_seed(1)
    imgs = torch.randint(0, 256, (4, 3, 112, 112), generator=gen,
                         dtype=torch.uint8)
    samples = [DataSample().set_gt_label(i // 2) for i in range(4)]
    data = model.data_preprocessor(dict(inputs=list(imgs),
                                        data_samples=samples), True)
    losses = model(**data, mode='loss')
    key = f'distill.loss_{name}'
    assert key in losses
    for k, v in losses.items():
        assert torch.isfinite(v).all(), (k, v)
    assert losses[key].requires_grad
    if kind == 'demo':  # cheap enough to check that the student gets grads
        losses[key].backward()
        grads = [p.grad for p in model.student.backbone.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
        assert all(p.grad is None for p in model.teacher.parameters())

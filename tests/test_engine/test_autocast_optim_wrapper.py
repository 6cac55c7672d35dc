"""Mixed precision on CPU: bfloat16 autocast for a distillation step, loss
math in float32, and `tools/train.py --amp` choosing the wrapper."""
import copy
import importlib.util
import os.path as osp
import sys

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.structures import DataSample

from mmfacekd.registry import MODELS, OPTIM_WRAPPERS

from conftest import ROOT

GKD = 'configs/demo/gkd_r18_mbf_synth.py'


def _gkd_distiller():
    cfg = Config.fromfile(osp.join(ROOT, GKD))
    cfg.model.teacher_ckpt = None  # random teacher: the step is what counts
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


def _batch(n=16):
    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, 112, 112), dtype=torch.uint8,
                          generator=g) for _ in range(n)]
    return dict(inputs=imgs,
                data_samples=[DataSample().set_gt_label(i % 7)
                              for i in range(n)])


def _step(model, wrapper_cfg, dtypes):
    """One train_step; record the dtypes the networks and losses saw."""
    wrapper = OPTIM_WRAPPERS.build(dict(
        wrapper_cfg, optimizer=torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad], lr=0.1)))
    hooks = [
        model.student.backbone.register_forward_hook(
            lambda m, i, o: dtypes.__setitem__('student', o.dtype)),
        model.teacher.backbone.register_forward_hook(
            lambda m, i, o: dtypes.__setitem__('teacher', o.dtype)),
        model.distill_losses['gkd'].register_forward_pre_hook(
            lambda m, a, kw: dtypes.__setitem__(
                'loss_inputs', {v.dtype for v in kw.values()
                                if torch.is_tensor(v)
                                and v.is_floating_point()}),
            with_kwargs=True),
    ]
    try:
        log = model.train_step(_batch(), wrapper)
    finally:
        for h in hooks:
            h.remove()
    return log


def test_bf16_distillation_step_on_cpu_close_to_fp32():
    ref_model = _gkd_distiller()
    bf16_model = copy.deepcopy(ref_model)
    d32, d16 = {}, {}
    ref = _step(ref_model, dict(type='OptimWrapper'), d32)
    got = _step(bf16_model,
                dict(type='AutocastOptimWrapper', dtype='bfloat16'), d16)
    # the networks ran in bfloat16, the losses got float32 inputs
    assert d32['student'] == torch.float32
    assert d16['student'] == torch.bfloat16
    assert d16['teacher'] == torch.bfloat16
    assert d16['loss_inputs'] == {torch.float32}
    for key in ('loss', 'student.loss_cls', 'distill.loss_gkd'):
        a, b = float(ref[key].detach()), float(got[key].detach())
        assert torch.isfinite(torch.tensor(b)), key
        assert abs(b - a) <= 0.05 * abs(a) + 1e-3, (key, a, b)
    # parameters stay float32 and the step changed them
    p16 = dict(bf16_model.student.named_parameters())
    for name, p in ref_model.student.named_parameters():
        assert p16[name].dtype == torch.float32
    moved = [(p16[n] - p).abs().max() for n, p in
             _gkd_distiller().student.named_parameters()]
    assert max(moved) > 0


def test_train_amp_flag_picks_the_cpu_wrapper(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location(
        'mmfacekd_train_tool', osp.join(ROOT, 'tools', 'train.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(sys, 'argv', ['train.py', GKD, '--amp'])
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = tool.merge_args(Config.fromfile(osp.join(ROOT, GKD)),
                          tool.parse_args())
    assert cfg.optim_wrapper.type == 'AutocastOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    wrapper = build_optim_wrapper(torch.nn.Linear(2, 2), cfg.optim_wrapper)
    assert type(wrapper).__name__ == 'AutocastOptimWrapper'
    assert wrapper.cast_dtype == torch.bfloat16

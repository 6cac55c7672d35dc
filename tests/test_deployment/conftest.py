"""A tiny exported model shared by the deployment tests: the CPU-demo
MobileFaceNet (64x64 behind ``resize_to``) with deterministic, well-scaled
weights, exported once with ``tools/deployment/pytorch2onnx.py``."""
import importlib.util
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MBF_DEMO = osp.join(ROOT, 'configs/demo/arcface_mbf_synth.py')


def load_tool(rel_path: str):
    """Import a script under tools/ as a module (to call its ``main``)."""
    name = osp.splitext(osp.basename(rel_path))[0]
    spec = importlib.util.spec_from_file_location(name,
                                                  osp.join(ROOT, rel_path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic weights with realistic activation scales (He-scaled
    weights, BatchNorm statistics and affines away from the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if t.dim() > 1:
                t.copy_(torch.randn(t.shape, generator=g)
                        * (2.0 / t[0].numel())**0.5)
            elif name.endswith(('running_var', 'weight')):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            else:
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
    return model


@pytest.fixture(scope='session')
def tiny_export(tiny_synth, tmp_path_factory):
    """``SimpleNamespace(onnx, checkpoint, recognizer, lfw)``: the demo MBF
    exported with ``--bake-normalization`` and checked on real crops."""
    from mmengine.config import Config

    from mmfacekd.deployment import (
        build_embedding_model,
        load_face_images,
        recalibrate_batchnorm,
    )
    tmp = tmp_path_factory.mktemp('deploy')
    recognizer, _ = build_embedding_model(Config.fromfile(MBF_DEMO))
    recalibrate_batchnorm(randomize_(recognizer),
                          load_face_images(tiny_synth, 64, seed=1))
    ckpt = str(tmp / 'mbf.pth')
    torch.save(dict(state_dict=recognizer.state_dict()), ckpt)
    out = str(tmp / 'mbf.onnx')
    lfw = osp.join(tiny_synth, 'synth_lfw.bin')
    rc = load_tool('tools/deployment/pytorch2onnx.py').main([
        MBF_DEMO, ckpt, '--out', out, '--bake-normalization', '--images',
        lfw, '--check-images', '80'])
    assert rc == 0
    return SimpleNamespace(onnx=out, checkpoint=ckpt, recognizer=recognizer,
                           lfw=lfw, tmp=tmp)

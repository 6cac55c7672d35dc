"""ONNX export of the embedding network: parity with PyTorch on real crops,
the recorded input contract, dynamic batch, distiller students, and the
errors for a foreign checkpoint / unknown size / unsupported opset."""
import os.path as osp

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from mmfacekd.deployment import (
    CheckpointMismatchError,
    InputSpec,
    InputSpecError,
    OnnxEmbedder,
    OpsetError,
    ParityError,
    area_resize_matrix,
    build_embedding_model,
    check_opset,
    check_parity,
    cosine_rows,
    load_face_images,
    max_runtime_opset,
    read_metadata,
)

from .conftest import MBF_DEMO, ROOT, load_tool, randomize_


def test_area_resize_is_interpolate_area():
    x = torch.rand(2, 3, 112, 96, dtype=torch.float64)
    rows = area_resize_matrix(112, 64).double()
    cols = area_resize_matrix(96, 40).double()
    got = rows @ x @ cols.t()
    want = F.interpolate(x, size=(64, 40), mode='area')
    assert torch.allclose(got, want, atol=1e-6)


def test_parity_metadata_and_dynamic_batch(tiny_export):
    meta = read_metadata(tiny_export.onnx)
    assert meta['mmfacekd.opset'] == '18'
    assert meta['mmfacekd.input_size'] == '112x112'
    assert meta['mmfacekd.normalization'] == 'baked'
    assert meta['mmfacekd.input_color'] == 'RGB'
    model = onnx.load(tiny_export.onnx)
    assert model.opset_import[0].version == 18
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField('dim_value')  # symbolic batch
    assert [d.dim_value for d in dims[1:]] == [3, 112, 112]
    # an independent PyTorch path: hand normalization, area resize, modules
    crops = load_face_images(tiny_export.lfw, 9)
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    rec = tiny_export.recognizer
    with torch.no_grad():
        want = rec.backbone(F.interpolate(
            (x - 127.5) / 128.0, size=(64, 64), mode='area')).numpy()
    ort = OnnxEmbedder(tiny_export.onnx)
    assert ort.spec.normalization_baked and ort.spec.network_size == (64, 64)
    for batch in (1, 9):  # the graph was traced with batch 2
        got = ort.embed(crops, batch_size=batch)
        assert cosine_rows(want, got).min() > 0.9999
        assert np.abs(want - got).max() < 1e-4 * np.abs(want).max()


def test_unbaked_input_is_normalized_by_the_caller():
    spec = InputSpec(height=2, width=2, mean=127.5, std=128.0)
    img = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3) * 20
    x = spec.prepare(img)
    assert x.shape == (1, 3, 2, 2)
    assert np.allclose(x[0, 1, 0, 1], (img[0, 0, 1, 1] - 127.5) / 128.0)
    baked = spec.replace(normalization_baked=True).prepare(img)
    assert baked[0, 2, 1, 0] == img[0, 1, 0, 2]
    with pytest.raises(ValueError, match='align/resize the faces'):
        spec.prepare(np.zeros((1, 3, 3, 3), np.uint8))


def test_parity_failure_is_an_error(tiny_export):
    rec, _ = build_embedding_model(Config.fromfile(MBF_DEMO))
    randomize_(rec, seed=1)  # other weights than the exported ones
    with pytest.raises(ParityError, match='below the required cosine'):
        check_parity(rec, tiny_export.onnx,
                     load_face_images(tiny_export.lfw, 4))


def test_distiller_checkpoint_exports_the_student():
    cfg = Config.fromfile(osp.join(ROOT, 'configs/demo/gkd_r18_mbf_synth.py'))
    student, pre = build_embedding_model(cfg)
    randomize_(student, seed=2)
    state = {f'student.{k}': v for k, v in student.state_dict().items()}
    state['teacher.backbone.conv1.weight'] = torch.zeros(16, 3, 3, 3)
    state['connectors.x.weight'] = torch.zeros(1)
    loaded, pre2 = build_embedding_model(cfg, dict(state_dict=state))
    assert pre2 == pre and pre['resize_to'] == 64  # the distiller's
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.extract_feat(x), student.extract_feat(x))


def test_checkpoint_of_another_architecture(tiny_export, tmp_path, capsys):
    cfg = Config.fromfile(osp.join(ROOT, 'configs/demo/arcface_r18_synth.py'))
    rec, _ = build_embedding_model(cfg)
    ckpt = str(tmp_path / 'r18.pth')
    torch.save(dict(state_dict=rec.state_dict()), ckpt)
    rc = load_tool('tools/deployment/pytorch2onnx.py').main(
        [MBF_DEMO, ckpt, '--out', str(tmp_path / 'x.onnx')])
    err = capsys.readouterr().err
    assert rc == 1 and not (tmp_path / 'x.onnx').exists()
    assert f'Checkpoint {ckpt} does not fit the model of' in err
    assert 'another architecture' in err
    assert 'missing keys (' in err and "unexpected keys (" in err
    # same names, other widths: shape mismatches are named
    small = Config.fromfile(MBF_DEMO)
    small.model.backbone.num_features = 64
    with pytest.raises(CheckpointMismatchError, match='shape mismatches'):
        build_embedding_model(small, tiny_export.checkpoint)


def test_missing_input_size(capsys):
    cfg = osp.join(ROOT, 'configs/arcface/arcface_mbv3l_ms1mv2.py')
    rc = load_tool('tools/deployment/pytorch2onnx.py').main(
        [cfg, '--check-images', '0'])
    err = capsys.readouterr().err
    assert rc == 1 and 'missing input size' in err
    assert cfg in err and '--shape H W' in err


def test_onnx_without_spec_names_the_file(tiny_export, tmp_path):
    model = onnx.load(tiny_export.onnx)
    del model.metadata_props[:]
    path = str(tmp_path / 'foreign.onnx')
    onnx.save(model, path)
    with pytest.raises(InputSpecError, match='foreign.onnx has no'):
        OnnxEmbedder(path)
    # with the contract given explicitly it runs
    spec = InputSpec(112, 112, normalization_baked=True)
    assert OnnxEmbedder(path, spec).embed(
        load_face_images(tiny_export.lfw, 2)).shape == (2, 128)


def test_opset_the_runtime_lacks(tiny_export, tmp_path, capsys):
    top = max_runtime_opset()
    assert top >= 18
    check_opset(top)
    with pytest.raises(OpsetError, match=f'runs up to {top}'):
        check_opset(top + 1)
    rc = load_tool('tools/deployment/pytorch2onnx.py').main(
        [MBF_DEMO, tiny_export.checkpoint, '--opset', str(top + 1),
         '--out', str(tmp_path / 'x.onnx')])
    err = capsys.readouterr().err
    assert rc == 1 and f'--opset {top + 1} is not available' in err
    # a file stamped with such an opset: the loader names it and the fix
    model = onnx.load(tiny_export.onnx)
    model.opset_import[0].version = top + 1
    path = str(tmp_path / 'future.onnx')
    onnx.save(model, path)
    with pytest.raises(RuntimeError, match='future.onnx.*lower --opset'):
        OnnxEmbedder(path)


def test_batchnorm_recalibration_uses_crop_statistics(tiny_synth):
    from mmfacekd.deployment import recalibrate_batchnorm
    rec, _ = build_embedding_model(Config.fromfile(MBF_DEMO))
    randomize_(rec, seed=3)
    crops = load_face_images(tiny_synth, 24, seed=0)
    bn = rec.backbone.layers[0].layers[1]  # after the stem convolution
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        stem = rec.backbone.layers[0].layers[0](F.interpolate(
            (x - 127.5) / 128.0, size=(64, 64), mode='area'))
    recalibrate_batchnorm(rec, crops, batch_size=24)
    assert not rec.training and bn.momentum == 0.1
    assert torch.allclose(bn.running_mean, stem.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(bn.running_var, stem.var((0, 2, 3)), rtol=1e-3)

"""Dynamic/static int8 and float16 versions of the tiny exported model."""
import os

import numpy as np
import onnx

from mmfacekd.deployment import (
    FaceCalibrationReader,
    OnnxEmbedder,
    cosine_rows,
    load_face_images,
    quantize,
    read_metadata,
)

from .conftest import load_tool


def test_calibration_reader_feeds_every_crop_once(tiny_export):
    spec = OnnxEmbedder(tiny_export.onnx).spec
    crops = load_face_images(tiny_export.lfw, 10)
    reader = FaceCalibrationReader(crops, spec, batch_size=4)
    for _ in range(2):  # rewind restarts
        batches = iter(reader.get_next, None)
        xs = [b[spec.input_name] for b in batches]
        assert [len(x) for x in xs] == [4, 4, 2]
        assert np.array_equal(np.concatenate(xs),
                              crops.transpose(0, 3, 1, 2).astype(np.float32))
        reader.rewind()


def test_quantized_models_keep_contract_and_embeddings(tiny_export,
                                                       tiny_synth):
    crops = load_face_images(tiny_export.lfw, 40)
    calib = load_face_images(tiny_synth, 32, seed=0)  # training record
    ref = OnnxEmbedder(tiny_export.onnx).embed(crops)
    size = os.path.getsize(tiny_export.onnx)
    # int8 of random weights is far from a trained model's (measured:
    # tools/analysis/benchmark_quantization.py); a wrong input contract or
    # calibration would give cosines near 0
    for mode, min_mean_cos in (('fp16', 0.9999), ('dynamic', 0.6),
                               ('static', 0.6)):
        dst = str(tiny_export.tmp / f'mbf_{mode}.onnx')
        quantize(tiny_export.onnx, dst, mode, calibration=calib)
        meta = read_metadata(dst)
        assert meta['mmfacekd.quantization'] == mode
        assert meta['mmfacekd.input_spec'] == read_metadata(
            tiny_export.onnx)['mmfacekd.input_spec']
        got = OnnxEmbedder(dst).embed(crops)
        assert cosine_rows(ref, got).mean() > min_mean_cos, mode
        ops = {n.op_type for n in onnx.load(dst).graph.node}
        if mode == 'static':
            assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
        elif mode == 'dynamic':
            assert ops & {'ConvInteger', 'MatMulInteger',
                          'DynamicQuantizeLinear'}
        assert os.path.getsize(dst) < size  # fewer bytes per weight


def test_benchmark_quantization_table(tiny_export, tiny_synth, capsys):
    sets = [os.path.join(tiny_synth, f'{s}.bin')
            for s in ('synth_lfw', 'synth_cfp')]
    rc = load_tool('tools/analysis/benchmark_quantization.py').main(
        [tiny_export.onnx, '--modes', 'fp16', '--sets', *sets,
         '--n-boot', '20', '--out-dir', str(tiny_export.tmp / 'bench')])
    out = capsys.readouterr().out
    assert rc == 0
    rows = [r for r in out.splitlines() if r.startswith('| ')]
    assert rows[0].startswith('| model | size (MiB) | synth_lfw | synth_cfp')
    assert rows[1].startswith('| fp32 |') and rows[2].startswith('| fp16 |')
    assert rows[2].count('Δ +0.00') == 3  # fp16 embeddings: the same decisions

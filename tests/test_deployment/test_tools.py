"""The command-line tools quantize_onnx.py and get_flops.py
(pytorch2onnx.py, convert_insightface.py and benchmark_quantization.py are
run by the other tests of this folder; benchmark_latency.py and
parity_table.py only by the measurements of docs/deployment.md)."""
import os.path as osp
import re

from .conftest import MBF_DEMO, ROOT, load_tool


def test_quantize_onnx_writes_each_mode(tiny_export, tiny_synth, capsys):
    out_dir = str(tiny_export.tmp / 'q')
    rc = load_tool('tools/deployment/quantize_onnx.py').main([
        tiny_export.onnx, '--modes', 'dynamic', 'fp16', '--out-dir',
        out_dir, '--check-source', tiny_export.lfw, '--check-images', '8'])
    out = capsys.readouterr().out
    assert rc == 0
    for mode in ('dynamic', 'fp16'):
        assert osp.isfile(osp.join(out_dir, f'mbf_{mode}.onnx'))
    cos = [float(c) for c in re.findall(r'min (\d\.\d+)', out)]
    assert len(cos) == 2 and cos[1] > 0.999  # fp16


def test_get_flops(capsys):
    tool = load_tool('tools/analysis/get_flops.py')
    assert tool.main([MBF_DEMO, '--table']) == 0
    out = capsys.readouterr().out
    # counted at data_preprocessor.resize_to, in multiply-accumulates
    assert 'input 3x64x64' in out and 'multiply-accumulates' in out
    # the stem: a 3x3 conv, 3 -> 64 channels, stride 2 -> 32 * 32 outputs
    assert f'{32 * 32 * 64 * 27 / 1e6:.3f}M' in out.replace(' ', '')
    mbv3 = osp.join(ROOT, 'configs/arcface/arcface_mbv3l_ms1mv2.py')
    assert tool.main([mbv3]) == 1
    assert '--shape H W' in capsys.readouterr().err

"""tools/test.py: how the command line is applied to the config."""
import importlib.util
import os.path as osp

from mmengine.config import Config

from conftest import ROOT


def _test_tool():
    spec = importlib.util.spec_from_file_location(
        'mmfacekd_test_tool', osp.join(ROOT, 'tools', 'test.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_cfg_options_override_the_suite(tmp_path):
    tool = _test_tool()
    cfg_path = _write(tmp_path / 'cfg.py', (
        "test_dataloader = dict(batch_size=4, dataset=dict(type='A'))\n"
        "test_evaluator = dict(type='MetricA')\n"
        "test_cfg = dict()\n"))
    suite_path = _write(tmp_path / 'suite.py', (
        "test_dataloader = dict(batch_size=8, dataset=dict(type='B'))\n"
        "test_evaluator = dict(type='MetricB')\n"))
    args = tool.parse_args([
        cfg_path, 'ckpt.pth', '--suite', suite_path, '--no-progress',
        '--cfg-options', 'test_dataloader.batch_size=2',
        'test_evaluator.type=MetricC'])
    cfg = tool.merge_args(Config.fromfile(cfg_path), args)
    # the suite replaces the config's sets ...
    assert cfg.test_dataloader.dataset.type == 'B'
    # ... and --cfg-options, applied last, win over it
    assert cfg.test_dataloader.batch_size == 2
    assert cfg.test_evaluator.type == 'MetricC'
    assert cfg.load_from == 'ckpt.pth' and cfg.resume is False
    assert cfg.work_dir == osp.join('./work_dirs', 'cfg')


def test_cfg_options_can_set_the_work_dir(tmp_path):
    tool = _test_tool()
    cfg_path = _write(tmp_path / 'cfg.py', 'test_cfg = dict()\n')
    args = tool.parse_args([cfg_path, 'ckpt.pth', '--work-dir', 'a',
                            '--cfg-options', 'work_dir=b'])
    cfg = tool.merge_args(Config.fromfile(cfg_path), args)
    assert cfg.work_dir == 'b'
    assert cfg.custom_hooks[-1]['type'] == 'EmbeddingProgressHook'

"""Safe checkpoint loading: explicit setup, allow-list, refusal of code."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmfacekd.utils import load_checkpoint_safely

from conftest import ROOT


def test_import_has_no_process_wide_effect():
    code = (
        'import torch\n'
        'from mmengine.logging.history_buffer import HistoryBuffer\n'
        'before = HistoryBuffer.__dict__.get("__getstate__")\n'
        'import mmfacekd, mmfacekd.models, mmfacekd.datasets, '
        'mmfacekd.engine, mmfacekd.evaluation\n'
        'from mmfacekd.utils import register_all_modules\n'
        'register_all_modules()\n'
        'assert HistoryBuffer not in torch.serialization.get_safe_globals()\n'
        'assert HistoryBuffer.__dict__.get("__getstate__") is before\n'
        'from mmfacekd.utils import register_safe_globals\n'
        'register_safe_globals()\n'
        'assert HistoryBuffer in torch.serialization.get_safe_globals()\n'
        'print("ok")\n')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith('ok')


def test_loads_mmengine_types_without_changing_the_allow_list(tmp_path):
    path = str(tmp_path / 'ckpt.pth')
    from mmengine.logging.history_buffer import HistoryBuffer
    orig = HistoryBuffer.__dict__.get('__getstate__')
    HistoryBuffer.__getstate__ = lambda self: {
        k: v for k, v in self.__dict__.items() if k != 'statistics_methods'}
    try:
        buf = HistoryBuffer()
        buf.update(1.5)
        torch.save(dict(state_dict=dict(w=torch.ones(2)),
                        meta=dict(epoch=np.int64(3), arr=np.arange(3)),
                        message_hub=dict(log=buf)), path)
    finally:
        if orig is None:
            del HistoryBuffer.__getstate__
        else:
            HistoryBuffer.__getstate__ = orig
    # torch keeps the allow-list as a set: compare as sets
    before = set(torch.serialization.get_safe_globals())
    ckpt = load_checkpoint_safely(path)
    assert torch.equal(ckpt['state_dict']['w'], torch.ones(2))
    assert ckpt['meta']['epoch'] == 3
    np.testing.assert_array_equal(ckpt['meta']['arr'], np.arange(3))
    assert ckpt['message_hub']['log'].current() == 1.5
    assert set(torch.serialization.get_safe_globals()) == before


class _Exploit:
    def __reduce__(self):
        return (os.system, ('echo pwned > /dev/null', ))


def test_refuses_a_pickle_that_runs_code(tmp_path):
    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        pickle.dump({'state_dict': _Exploit()}, f)
    torch_path = tmp_path / 'evil_zip.pth'
    torch.save({'state_dict': _Exploit()}, torch_path)
    for p in (path, torch_path):
        with pytest.raises(RuntimeError, match='evil') as err:
            load_checkpoint_safely(str(p))
        assert 're-save' in str(err.value)


def test_safe_load_keeps_a_process_wide_allow_list(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer

    from mmfacekd.utils import register_safe_globals
    register_safe_globals()
    path = str(tmp_path / 'c.pth')
    buf = HistoryBuffer()
    buf.update(2.0)
    torch.save(dict(log=buf), path)
    assert load_checkpoint_safely(path)['log'].current() == 2.0
    # still allowed for MMEngine's own loaders afterwards
    assert HistoryBuffer in torch.serialization.get_safe_globals()


def test_safe_checkpoint_hook_registers_before_the_run():
    from mmengine.logging.history_buffer import HistoryBuffer

    from mmfacekd.engine import SafeCheckpointHook
    hook = SafeCheckpointHook()
    hook.before_run(runner=None)
    assert HistoryBuffer in torch.serialization.get_safe_globals()
    assert 'statistics_methods' not in HistoryBuffer().__getstate__()

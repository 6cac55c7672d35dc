"""A checkpoint whose pickle would run code is refused by every tool that
loads one — train --resume, load_from, teacher loading, test, student
extraction, the prototype head and the teacher cache — and the code never
runs (a marker file it would create stays absent).

Each tool runs as its own process, forked from a server that has imported
torch, MMEngine and mmfacekd once (tests/tool_server.py), instead of paying
a fresh interpreter's imports per tool."""
import os

import pytest
import torch
from tool_server import shared_server

from conftest import ROOT, tiny_model_config

STUDENT = 'configs/demo/arcface_mbf_synth.py'
KD = 'configs/demo/kd_r18_mbf_synth.py'


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.fixture(scope='module')
def setup(tiny_synth, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('untrusted')
    marker = str(tmp / 'PWNED')
    evil = str(tmp / 'evil.pth')
    torch.save({'state_dict': _Exploit(marker),
                'meta': {'epoch': 1}}, evil)
    student = tiny_model_config(STUDENT, tiny_synth, str(tmp / 'w'))
    student.val_cfg = student.val_dataloader = student.val_evaluator = None
    student_cfg = str(tmp / 'student.py')
    student.dump(student_cfg)
    kd = tiny_model_config(KD, tiny_synth, str(tmp / 'kd'),
                           model=dict(teacher_ckpt=evil))
    kd.val_cfg = kd.val_dataloader = kd.val_evaluator = None
    kd_cfg = str(tmp / 'kd.py')
    kd.dump(kd_cfg)
    return dict(tmp=tmp, marker=marker, evil=evil, student=student_cfg,
                kd=kd_cfg)


CASES = {
    'train --resume': lambda s: ['tools/train.py', s['student'], '--resume',
                                 s['evil']],
    'train load_from': lambda s: ['tools/train.py', s['student'],
                                  '--cfg-options', f'load_from={s["evil"]}'],
    'train teacher_ckpt': lambda s: ['tools/train.py', s['kd']],
    'test': lambda s: ['tools/test.py', s['student'], s['evil']],
    'extract_student': lambda s: ['tools/misc/extract_student.py', s['evil'],
                                  str(s['tmp'] / 'out.pth')],
    'build_prototype_head': lambda s: [
        'tools/misc/build_prototype_head.py', s['kd'], '--out',
        str(s['tmp'] / 'head.pth'), '--num-workers', '0'],
    'cache_teacher': lambda s: ['tools/misc/cache_teacher.py', s['kd'],
                                '--out', str(s['tmp'] / 'c.npy'),
                                '--num-workers', '0'],
}


@pytest.fixture(scope='module')
def tools():
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    return shared_server(env, ROOT)


@pytest.mark.parametrize('case', sorted(CASES))
def test_tool_refuses_code_in_a_checkpoint(case, setup, tools):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    rc, out = tools.run(CASES[case](setup), ROOT,
                        str(setup['tmp'] / f'{case}.log'), env, timeout=300)
    assert rc != 0, out[-2000:]
    assert not os.path.exists(setup['marker']), f'{case} ran the pickle'
    assert 'weights_only' in out or 'Weights only' in out, out[-2000:]

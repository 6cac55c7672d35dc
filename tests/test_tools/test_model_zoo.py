"""The model zoo: docs/model_zoo.md is exactly what tools/misc/
gen_model_zoo.py makes from the metafiles now, every config a metafile
names exists, every model carries its training command and checkpoint name,
and every demo config is in the zoo."""
import glob
import importlib.util
import os.path as osp
import re

import pytest
import yaml

from conftest import ROOT


def _generator():
    spec = importlib.util.spec_from_file_location(
        'gen_model_zoo', osp.join(ROOT, 'tools/misc/gen_model_zoo.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GEN = _generator()
METAFILES = GEN.metafiles()


def _models():
    for path in METAFILES:
        with open(path) as f:
            for model in yaml.safe_load(f)['Models']:
                yield osp.relpath(path, ROOT), model


def test_committed_model_zoo_is_generated():
    with open(osp.join(ROOT, GEN.OUT)) as f:
        committed = f.read()
    assert committed == GEN.generate(), (
        'docs/model_zoo.md is stale: run python tools/misc/gen_model_zoo.py')
    assert GEN.main(['--check']) == 0


def test_every_metafile_and_model_is_on_the_page():
    page = GEN.generate()
    folders = {osp.basename(osp.dirname(p)) for p in METAFILES}
    assert {'arcface', 'gkd', 'cakd', 'kd'} <= folders
    for path, model in _models():
        row = [ln for ln in page.splitlines()
               if ln.startswith(f'| {model["Name"]} |')]
        assert len(row) == 1, (path, model['Name'])
        assert f'(../{model["Config"]})' in row[0]
        for res in model['Results'] or []:
            for key, value in res['Metrics'].items():
                assert f'{key} {value:.2f}' in row[0], (model['Name'], key)


@pytest.mark.parametrize('path,model', list(_models()),
                         ids=lambda x: x['Name'] if isinstance(x, dict)
                         else osp.dirname(x))
def test_model_entry(path, model):
    config = model['Config']
    assert osp.isfile(osp.join(ROOT, config)), f'{path}: {config} missing'
    md = model['Metadata']
    missing = [k for k in GEN.REQUIRED_METADATA if k not in md]
    assert not missing, f'{path}, {model["Name"]}: Metadata lacks {missing}'
    # the command trains this very config; the checkpoint is its last epoch
    assert re.fullmatch(rf'tools/dist_train\.sh {re.escape(config)} \d+',
                        md['Training Command']), md['Training Command']
    stem = osp.splitext(osp.basename(config))[0]
    assert md['Checkpoint'] == f'work_dirs/{stem}/epoch_{md["Epochs"]}.pth'


def test_every_demo_config_is_in_the_zoo():
    named = {m['Config'] for _, m in _models()}
    demo = {osp.relpath(p, ROOT)
            for p in glob.glob(osp.join(ROOT, 'configs/demo/*.py'))
            if not osp.basename(p).startswith('_')}
    assert demo - named == set()


def test_bad_metafile_names_the_file_and_field(tmp_path):
    bad = tmp_path / 'metafile.yml'
    bad.write_text('Collections: [{Name: X}]\nModels:\n  - Name: x\n'
                   '    In Collection: X\n    Metadata: {Training Data: y}\n')
    with pytest.raises(ValueError, match=r'metafile.yml, Models\[0\]: '
                       r'missing `Config`'):
        GEN.load_metafile(str(bad))
    bad.write_text('Models: []\n')
    with pytest.raises(ValueError, match='needs `Collections`'):
        GEN.load_metafile(str(bad))

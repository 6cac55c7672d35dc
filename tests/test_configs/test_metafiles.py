"""Every method folder under configs/ has a README and an OpenMMLab
metafile whose Config paths exist."""
import os
import os.path as osp

import pytest
import yaml

from conftest import ROOT

METHODS = ['arcface', 'kd', 'dkd', 'gkd', 'ekd', 'fitnet', 'rkd', 'sp', 'cckd',
           'darkrank', 'shrinkteanet', 'triplet', 'margin_distillation',
           'cakd', 'adadistill']


def test_every_config_folder_is_a_method_or_shared():
    folders = {d for d in os.listdir(osp.join(ROOT, 'configs'))
               if osp.isdir(osp.join(ROOT, 'configs', d))}
    assert folders == set(METHODS) | {'_base_', 'demo'}


@pytest.mark.parametrize('method', METHODS)
def test_metafile(method):
    folder = osp.join(ROOT, 'configs', method)
    assert osp.isfile(osp.join(folder, 'README.md'))
    with open(osp.join(folder, 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    (coll, ) = meta['Collections']
    assert coll['README'] == f'configs/{method}/README.md'
    assert coll['Paper']['URL'].startswith('https://arxiv.org/abs/')
    names = set()
    for model in meta['Models']:
        assert model['In Collection'] == coll['Name']
        assert osp.isfile(osp.join(ROOT, model['Config'])), model['Config']
        assert 'Training Data' in model['Metadata']
        assert 'Weights' in model
        for res in model['Results'] or []:
            assert res['Task'] == 'Face Recognition'
            assert res['Dataset'] and res['Metrics']
        assert model['Name'] not in names
        names.add(model['Name'])
    # every config of the folder is listed
    listed = {m['Config'] for m in meta['Models']}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            if f.endswith('.py'):
                rel = osp.relpath(osp.join(dirpath, f), ROOT)
                assert rel in listed, rel

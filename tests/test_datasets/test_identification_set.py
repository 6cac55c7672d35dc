"""IdentificationDataset: list and folder layouts, bad input, end to end."""
import os
import os.path as osp

import numpy as np
import pytest
import torch

from mmfacekd.datasets import IdentificationDataset
from mmfacekd.datasets.synthetic.identification_set import (
    write_identification_set,
)

PIPE = [dict(type='LoadFaceImage', expected_size=(112, 112)),
        dict(type='PackFaceInputs')]


@pytest.fixture(scope='module')
def id_set(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('ident'))
    summary = write_identification_set(out, num_probe_ids=4,
                                       probe_imgs=(2, 4),
                                       num_distractor_ids=8,
                                       distractor_imgs=(1, 2), seed=3,
                                       landmarks=True)
    return out, summary


def _listed(root, **kw):
    return IdentificationDataset(data_root=root,
                                 probe_list='probe_list.txt',
                                 distractor_list='distractor_list.txt',
                                 **kw)


def test_list_and_folder_layouts_agree(id_set):
    root, summary = id_set
    a = _listed(root, set_name='synth')
    b = IdentificationDataset(data_root=root, set_name='synth')
    assert len(a) == len(b) == summary['num_probes'] + \
        summary['num_distractors']
    keys = ('img_path', 'role', 'identity', 'identity_name', 'sample_idx',
            'set_name', 'eval_protocol')
    for i in range(len(a)):
        ia, ib = a.get_data_info(i), b.get_data_info(i)
        assert {k: ia.get(k) for k in keys} == {k: ib.get(k) for k in keys}
        assert ia['eval_protocol'] == 'identification'
    roles = [a.get_data_info(i)['role'] for i in range(len(a))]
    n_p = summary['num_probes']
    assert roles == ['probe'] * n_p + ['distractor'] * (len(a) - n_p)
    assert a.metainfo['num_probes'] == n_p
    assert len(a.metainfo['identities']) == 4
    # the landmarks of the list lines are the renderer's, near the template
    lms = a.get_data_info(0)['landmarks']
    assert lms.shape == (5, 2) and np.abs(lms - [38.3, 51.7]).min() < 15


def test_pipeline_packs_protocol_fields(id_set):
    root, _ = id_set
    ds = _listed(root, set_name='synth', pipeline=PIPE)
    out = ds[0]
    assert out['inputs'].shape == (3, 112, 112)
    meta = out['data_samples'].metainfo
    assert meta['role'] == 'probe' and meta['identity'] == 0
    assert meta['set_name'] == 'synth' and meta['sample_idx'] == 0
    assert meta['eval_protocol'] == 'identification'
    last = ds[len(ds) - 1]['data_samples'].metainfo
    assert last['role'] == 'distractor' and last['identity'] == -1


def _write(path, lines):
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def _lists(root, probe_lines, dis_lines=('distractors/id00004/000.jpg', )):
    _write(osp.join(root, 'p.txt'), probe_lines)
    _write(osp.join(root, 'd.txt'), dis_lines)
    return lambda: IdentificationDataset(data_root=root, probe_list='p.txt',
                                         distractor_list='d.txt')


def test_bad_input_messages(id_set, tmp_path):
    root, _ = id_set
    os.symlink(osp.join(root, 'probe'), tmp_path / 'probe')
    os.symlink(osp.join(root, 'distractors'), tmp_path / 'distractors')
    root = str(tmp_path)
    ok = ['probe/id00000/000.jpg id00000', 'probe/id00000/001.jpg id00000']
    _lists(root, ['# comment', ''] + ok)()  # fine
    with pytest.raises(ValueError, match=r'p\.txt line 2: 3 fields\. '
                       r'Expected `<path> <identity>`'):
        _lists(root, ok[:1] + ['probe/id00000/001.jpg id00000 7'])()
    with pytest.raises(ValueError, match=r'd\.txt line 1: 2 fields'):
        _lists(root, ok, ['distractors/id00004/000.jpg x'])()
    with pytest.raises(ValueError,
                       match=r'p\.txt line 2: image probe/nope\.jpg not '
                       r'found .*Fix the path'):
        _lists(root, ok[:1] + ['probe/nope.jpg id00000'])()
    with pytest.raises(ValueError,
                       match=r"p\.txt line 3: probe identity 'id00001' has "
                       r'only one image\. .*remove this identity'):
        _lists(root, ok + ['probe/id00001/000.jpg id00001'])()
    with pytest.raises(ValueError, match=r'line 1: landmarks .* not numbers'):
        _lists(root, ['probe/id00000/000.jpg id00000 ' + 'a ' * 10] + ok)()
    with pytest.raises(ValueError, match=r'd\.txt: no distractor images'):
        _lists(root, ok, ['# nothing'])()
    with pytest.raises(ValueError, match='give both probe_list'):
        IdentificationDataset(data_root=root, probe_list='p.txt')
    with pytest.raises(ValueError, match=r'missing\.txt: probe list not'):
        IdentificationDataset(data_root=root, probe_list='missing.txt',
                              distractor_list='d.txt')


def test_undecodable_image_names_line(tmp_path):
    root = str(tmp_path)
    write_identification_set(root, num_probe_ids=1, probe_imgs=(2, 2),
                             num_distractor_ids=1, distractor_imgs=(1, 1))
    with open(osp.join(root, 'distractors', 'id00001', '000.jpg'), 'wb') as f:
        f.write(b'not a jpeg')
    ds = _listed(root, pipeline=PIPE)  # lazy: found when loaded
    with pytest.raises(ValueError, match=r'distractor_list\.txt line 1 .*'
                       r'remove it from the set or re-create'):
        ds[2]
    with pytest.raises(ValueError, match=r'distractor_list\.txt line 1'):
        _listed(root, check_images=True)


def test_folder_layout_errors(tmp_path):
    with pytest.raises(ValueError, match='folder layout needs probe/'):
        IdentificationDataset(data_root=str(tmp_path))
    (tmp_path / 'probe' / 'a').mkdir(parents=True)
    (tmp_path / 'distractors').mkdir()
    import cv2
    img = np.zeros((112, 112, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'probe' / 'a' / '1.jpg'), img)
    cv2.imwrite(str(tmp_path / 'probe' / 'a' / '2.jpg'), img)
    with pytest.raises(ValueError, match='no distractor images'):
        IdentificationDataset(data_root=str(tmp_path))
    (tmp_path / 'distractors' / 'x' / 'y').mkdir(parents=True)
    cv2.imwrite(str(tmp_path / 'distractors' / 'x' / 'y' / '1.jpg'), img)
    cv2.imwrite(str(tmp_path / 'probe' / 'solo.jpg'), img)  # not a folder
    (tmp_path / 'probe' / 'b').mkdir()
    cv2.imwrite(str(tmp_path / 'probe' / 'b' / '1.jpg'), img)
    with pytest.raises(ValueError, match=r"probe/b/1\.jpg: probe identity "
                       r"'b' has only one image"):
        IdentificationDataset(data_root=str(tmp_path))


def test_synthetic_config_end_to_end(id_set):
    """The synthetic config's dataloader + evaluator, pixel embeddings."""
    from mmengine.config import Config
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DATASETS
    root, _ = id_set
    cfg = Config.fromfile(osp.join(
        osp.dirname(__file__), '..', '..', 'configs', '_base_', 'datasets',
        'identification_synthetic.py'))
    ds_cfg = cfg.test_dataloader.dataset
    ds_cfg.data_root = root
    ds = DATASETS.build(ds_cfg)
    evaluator = Evaluator(cfg.test_evaluator)
    for i in range(len(ds)):
        item = ds[i]
        x = item['inputs'].float()
        emb = torch.nn.functional.avg_pool2d(x[None], 8).flatten()
        sample = item['data_samples']
        sample.pred_embedding = emb - emb.mean()
        evaluator.process([sample])
    out = evaluator.evaluate(len(ds))
    assert {k for k in out if '_ci_' not in k} == {
        'synth_megaface/rank1', 'synth_megaface/tpr@fpr1e-5',
        'synth_megaface/tpr@fpr1e-4', 'synth_megaface/tpr@fpr1e-3'}
    assert all(0.0 <= v <= 100.0 for v in out.values())

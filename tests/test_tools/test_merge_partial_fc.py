"""tools/misc/merge_partial_fc.py: per-rank Partial FC shard files
(insightface's ``softmax_fc_gpu_<rank>.pt`` layout) into one full head."""
import importlib.util
import os.path as osp

import pytest
import torch

from mmfacekd.models.heads import PartialFCHead
from mmfacekd.utils import load_checkpoint_safely

from conftest import ROOT


def _tool():
    spec = importlib.util.spec_from_file_location(
        'merge_partial_fc', osp.join(ROOT, 'tools/misc/merge_partial_fc.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_shards(folder, full, world):
    """insightface's layout by hand: C // W rows each, the first C % W
    ranks one more; files written in a scrambled order."""
    base, extra = divmod(full.size(0), world)
    sizes = [base + (r < extra) for r in range(world)]
    starts = [sum(sizes[:r]) for r in range(world)]
    paths = []
    for r in reversed(range(world)):
        path = folder / f'softmax_fc_gpu_{r}.pt'
        torch.save(dict(weight=full[starts[r]:starts[r] + sizes[r]].clone()),
                   path)
        paths.append(str(path))
    return paths


def test_merges_in_rank_order_and_loads_into_a_head(tmp_path):
    full = torch.randn(25, 6)
    paths = _write_shards(tmp_path, full, world=12)  # 10, 11 sort after 9
    out = str(tmp_path / 'head.pth')
    _tool().main(paths + ['--num-classes', '25', '--out', out])
    merged = load_checkpoint_safely(out)['state_dict']['weight']
    assert torch.equal(merged, full)
    head = PartialFCHead(25, in_channels=6)
    head.load_state_dict(dict(weight=merged))
    assert torch.equal(head.weight.detach(), full)


@pytest.mark.parametrize('case', ['classes', 'missing_rank'])
def test_wrong_layout_is_one_clear_error(tmp_path, case):
    paths = _write_shards(tmp_path, torch.randn(25, 6), world=4)
    num_classes = 26 if case == 'classes' else 25
    if case == 'missing_rank':
        paths = [p for p in paths if not p.endswith('_3.pt')]
    with pytest.raises(SystemExit, match=r'softmax_fc_gpu_\d\.pt: shape .* '
                       r'owns \d+ of \d+ classes'):
        _tool().main(paths + ['--num-classes', str(num_classes), '--out',
                              str(tmp_path / 'head.pth')])

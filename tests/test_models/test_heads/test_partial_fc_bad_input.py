"""Bad input to a class-sharded head on 2 real gloo ranks: a checkpoint
whose head is one rank's shard, of another class count or of another
embedding size is refused on every rank with one error naming the rank,
the file, the key and the fix (no collective, so no hang); a rank that
never reaches the head's collective check fails the other rank after the
process-group timeout instead of hanging. Labels >= num_classes and batch
sizes that differ across ranks are tested in
tests/test_models/test_losses/test_sharded.py (2 and 4 ranks)."""
import os
import time
from types import SimpleNamespace

import torch
import torch.distributed as dist
from spawn_utils import run_on_gloo

from mmfacekd.engine.hooks import ShardedHeadCheckpointHook
from mmfacekd.models.heads import PartialFCHead

C, D = 10, 4
TIMEOUT = 10  # s, the process-group timeout of the workers


def _error(fn) -> str:
    try:
        fn()
    except (ValueError, RuntimeError) as exc:
        return f'{type(exc).__name__}: {exc}'
    return ''


def _load(head, weight, path):
    runner = SimpleNamespace(model=head, _resume=True, _load_from=path,
                             optim_wrapper=None)
    ShardedHeadCheckpointHook().after_load_checkpoint(
        runner, dict(state_dict=dict(weight=weight)))


def _cases(rank, world, out_dir):
    head = PartialFCHead(C, in_channels=D)
    out = {}
    path = 'work_dirs/run/epoch_3.pth'
    # a checkpoint saved without ShardedHeadCheckpointHook: rank 0's shard
    out['shard'] = _error(lambda: _load(head, torch.zeros(5, D), path))
    out['classes'] = _error(lambda: _load(head, torch.zeros(C + 3, D), path))
    out['dim'] = _error(lambda: _load(head, torch.zeros(C, D + 1), path))
    # a teacher checkpoint of another class count, loaded by the head
    out['teacher'] = _error(lambda: head.load_state_dict(
        dict(weight=torch.zeros(C + 3, D))))
    # the full head loads (each rank its rows)
    full = torch.arange(C * D, dtype=torch.float).reshape(C, D)
    _load(head, full, path)
    head.load_state_dict(dict(weight=full))
    out['rows'] = head.weight.detach().clone()
    dist.barrier()
    # rank 1 never reaches the collective check of the head's forward
    flag = os.path.join(out_dir, 'rank0_done')
    if rank == 0:
        start = time.monotonic()
        out['timeout'] = _error(lambda: head.get_logits(
            torch.randn(2, D), torch.tensor([0, 1])))
        out['elapsed'] = time.monotonic() - start
        open(flag, 'w').close()
    else:  # alive (not crashed) until rank 0 gave up, at most 60 s
        deadline = time.monotonic() + 60
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.2)
    return out


def test_bad_checkpoints_and_a_missing_rank(tmp_path):
    world = 2
    ranks = run_on_gloo(_cases, world, tmp_path, (str(tmp_path), ),
                        pg_timeout=TIMEOUT)
    full = torch.arange(C * D, dtype=torch.float).reshape(C, D)
    for rank, res in enumerate(ranks):
        where = f'rank {rank} of 2: checkpoint work_dirs/run/epoch_3.pth: ' \
            "key 'weight'"
        msg = res['shard']
        assert msg.startswith('ValueError: ' + where), msg
        assert 'shape (5, 4)' in msg and 'full head (10, 4)' in msg
        assert "one rank's shard" in msg and 'merge_partial_fc' in msg
        msg = res['classes']
        assert msg.startswith('ValueError: ' + where), msg
        assert 'another class count' in msg and 'num_classes=13' in msg
        msg = res['dim']
        assert msg.startswith('ValueError: ' + where), msg
        assert 'in_channels=4' in msg and 'another network' in msg
        msg = res['teacher']
        assert f'rank {rank} of 2' in msg and "'weight'" in msg
        assert 'num_classes=13' in msg
        shard = slice(0, 5) if rank == 0 else slice(5, 10)
        assert torch.equal(res['rows'], full[shard])
    # the waiting rank ends in an error after the timeout: no hang
    msg = ranks[0]['timeout']
    assert msg.startswith('RuntimeError'), msg
    assert ranks[0]['elapsed'] < TIMEOUT + 20

"""The negative-sampling state of PartialFCHead in checkpoints: a run saved
after N steps and resumed in fresh heads (another torch seed) draws the
negatives of the uninterrupted run at step N + 1, on 2 real gloo ranks; a
resume on another world size continues the step count on the new layout
(documented in docs/partial_fc.md)."""
import math
import os
from types import SimpleNamespace

import torch
import torch.distributed as dist
from spawn_utils import run_on_gloo

from mmfacekd.engine.hooks import ShardedHeadCheckpointHook
from mmfacekd.models.heads import PartialFCHead
from mmfacekd.models.heads.partial_fc_head import _mix_seed
from mmfacekd.models.heads.shard_checkpoint import (
    SAMPLING_KEY,
    load_sampling_states,
)
from mmfacekd.utils import load_checkpoint_safely

C, D, B_LOCAL, RATE, STEPS = 23, 8, 2, 0.3, 3


def _batch(step, world, rank):
    """This rank's rows of the global batch of ``step``; one label so that
    every rank draws negatives."""
    gen = torch.Generator().manual_seed(step)
    x = torch.randn(world * B_LOCAL, D, generator=gen)
    rows = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
    return x[rows], torch.zeros(B_LOCAL, dtype=torch.long)


def _step(head, optimizer, step, world, rank):
    x, y = _batch(step, world, rank)
    out = head.get_logits(x, y)
    optimizer.zero_grad()
    head.loss_by_logits(out)['loss_cls'].backward()
    optimizer.step()
    return out['class_index']


def _runner(head, optimizer, resume, path=None):
    return SimpleNamespace(model=head, _resume=resume, _load_from=path,
                           optim_wrapper=SimpleNamespace(optimizer=optimizer))


def _make(torch_seed):
    torch.manual_seed(torch_seed)  # the sampling seed defaults to it
    head = PartialFCHead(C, in_channels=D, s=8.0, sample_rate=RATE)
    return head, torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9)


def _resume_case(rank, world, out_dir):
    hook = ShardedHeadCheckpointHook()
    head, optimizer = _make(0)
    drawn = [_step(head, optimizer, t, world, rank) for t in range(STEPS)]
    runner = _runner(head, optimizer, False)
    hook.after_train_epoch(runner)  # gathers the full head on rank 0
    checkpoint = dict(state_dict=head.state_dict())
    hook.before_save_checkpoint(runner, checkpoint)
    path = os.path.join(out_dir, 'ckpt.pth')
    if rank == 0:  # what MMEngine writes: rank 0's dict
        torch.save(checkpoint, path)
    dist.barrier()
    next_draw = _step(head, optimizer, STEPS, world, rank)
    loaded = load_checkpoint_safely(path)
    resumed, opt = _make(1)  # another torch seed: the state must win
    hook.after_load_checkpoint(_runner(resumed, opt, True, path), loaded)
    state = resumed.sampling_state()
    fresh, opt2 = _make(1)  # load_from (not a resume): a new stream
    hook.after_load_checkpoint(_runner(fresh, opt2, False, path), loaded)
    return dict(drawn=drawn, next=next_draw, saved=checkpoint[SAMPLING_KEY],
                resumed_state=state,
                resumed=_step(resumed, opt, STEPS, world, rank),
                fresh_state=fresh.sampling_state())


def test_resumed_run_draws_the_uninterrupted_negatives(tmp_path):
    world = 2
    ranks = run_on_gloo(_resume_case, world, tmp_path, (str(tmp_path), ),
                        pg_timeout=60)
    # one state for all ranks: (seed, step), nothing to gather
    expected = {'': dict(seed=0, step=STEPS, world_size=world)}
    for res in ranks:
        assert res['saved'] == expected
        assert res['resumed_state'] == expected['']
        assert torch.equal(res['resumed'], res['next'])
        # without the state: torch seed 1, step 0
        assert res['fresh_state'] == dict(seed=1, step=0, world_size=world)
        # sampling did happen: 1 positive (class 0) at most + negatives
        assert all(d.numel() < 12 for d in res['drawn'])
    # the ranks draw from their own shards, step after step
    assert not torch.equal(ranks[0]['drawn'][1], ranks[0]['drawn'][2])
    assert min(ranks[1]['next'].tolist()) >= 12  # rank 1: [12, 23)

    # the 2-rank checkpoint resumed by one process (another world size):
    # the step count continues on the 1-rank layout, with a note
    checkpoint = load_checkpoint_safely(str(tmp_path / 'ckpt.pth'))
    head, optimizer = _make(5)
    notes = load_sampling_states(checkpoint, head)
    assert len(notes) == 1 and 'saved on 2 ranks, resumed on 1' in notes[0]
    got = _step(head, optimizer, STEPS, 1, 0)
    gen = torch.Generator().manual_seed(_mix_seed(0, 0, STEPS))
    keep = math.floor(RATE * C)
    order = torch.randperm(C - 1, generator=gen)[:keep - 1]
    assert got.tolist() == sorted([0] + (order + 1).tolist())

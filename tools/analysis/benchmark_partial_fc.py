"""Benchmark (not a test) of the class-sharded heads on 2 gloo CPU ranks:
step time and peak tensor memory per rank of a plain (data-parallel)
ArcFace MarginHead vs PartialFCHead r = 1 / 0.3 / 0.1, and the step time of
ShardedGKDLoss vs ShardedKDLoss vs GKD on gathered logits.

    python tools/analysis/benchmark_partial_fc.py [--quick] [--loss-only]

The plain head holds all C classes on every rank and all-reduces its
gradient (what DDP does); Partial FC holds C / W. Memory is the peak of
live tensor bytes (torch.profiler memory events) plus the weight and
momentum alive before the step.
"""
import argparse
import datetime
import os
import socket
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))

from mmfacekd.models.heads import MarginHead, PartialFCHead  # noqa: E402
from mmfacekd.models.heads.partial_fc_memory import (  # noqa: E402
    peak_tensor_bytes,
)
from mmfacekd.models.losses import (  # noqa: E402
    GKDLoss,
    ShardedGKDLoss,
    ShardedKDLoss,
)
from mmfacekd.models.utils.class_shard import class_shard  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _timed(fn, steps):
    fn()  # warm-up
    dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    dist.barrier()
    return (time.perf_counter() - start) / steps


def _head_case(kind, rate, classes, dim, batch, steps):
    torch.manual_seed(0)
    if kind == 'plain':
        head = MarginHead(classes, in_channels=dim)
    else:
        head = PartialFCHead(classes, in_channels=dim, sample_rate=rate)
    opt = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(dist.get_rank())
    x = torch.randn(batch, dim, generator=gen)
    y = torch.randint(0, classes, (batch, ), generator=gen)

    def step():
        opt.zero_grad(set_to_none=True)
        head.loss_by_logits(head.get_logits(x, y), y)['loss_cls'].backward()
        if kind == 'plain':  # DDP averages the replicated head
            dist.all_reduce(head.weight.grad)
        opt.step()

    seconds = _timed(step, steps)
    opt.zero_grad(set_to_none=True)
    before = head.weight.nbytes + \
        opt.state[head.weight]['momentum_buffer'].nbytes
    return seconds, before + peak_tensor_bytes(step)


def _loss_case(classes, batch_global, steps):
    rank, world = dist.get_rank(), dist.get_world_size()
    shard = class_shard(classes, world, rank)
    gen = torch.Generator().manual_seed(0)
    s_full = torch.randn(batch_global, classes, generator=gen) * 4
    t_full = torch.randn(batch_global, classes, generator=gen) * 4
    y = torch.randint(0, classes, (batch_global, ), generator=gen)
    s = s_full[:, shard.start:shard.stop].clone().requires_grad_()
    t = t_full[:, shard.start:shard.stop].clone()
    kd, gkd, plain = ShardedKDLoss(4.0), ShardedGKDLoss(temperature=4.0), \
        GKDLoss(temperature=4.0)
    out = dict(
        kd=_timed(lambda: kd(s, t).backward(), steps),
        gkd=_timed(lambda: gkd(s, t, y)['loss'].backward(), steps))

    def gathered():  # all-gather the columns, then the plain GKD
        parts = [torch.empty(batch_global, class_shard(classes, world,
                                                       r).size)
                 for r in range(world)]
        dist.all_gather(parts, s.detach().contiguous())
        dist.all_gather([torch.empty_like(p) for p in parts],
                        t.contiguous())
        full = torch.cat(parts, 1).requires_grad_()
        gkd_full = plain(full, torch.cat(parts, 1), y)['loss']
        gkd_full.backward()

    out['gathered_gkd'] = _timed(gathered, steps)
    return out


def _worker(rank, world, port, args, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=1200))
    torch.set_num_threads(1)
    try:
        res = {}
        for classes in () if args.loss_only else args.classes:
            for kind, rate in (('plain', 1.0), ('pfc', 1.0), ('pfc', 0.3),
                               ('pfc', 0.1)):
                res[(classes, kind, rate)] = _head_case(
                    kind, rate, classes, args.dim, args.batch, args.steps)
        res['loss'] = _loss_case(args.loss_classes, args.batch * world,
                                 args.steps)
        torch.save(res, os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='C = 8,574 / 36,023, 2 steps (~1 min)')
    parser.add_argument('--loss-only', action='store_true',
                        help='only the logit losses (C = 85,742, or 8,574 '
                        'with --quick)')
    parser.add_argument('--steps', type=int, default=None,
                        help='timed steps (default 3, 2 with --quick)')
    parser.add_argument('--dim', type=int, default=512)
    parser.add_argument('--batch', type=int, default=32,
                        help='images per rank')
    args = parser.parse_args(argv)
    args.classes = (8574, 36023) if args.quick else (85742, 360232)
    args.loss_classes = 8574 if args.quick else 85742
    if args.steps is None:
        args.steps = 2 if args.quick else 3
    world = 2
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(world, _free_port(), args, out),
                 nprocs=world)
        ranks = [torch.load(os.path.join(out, f'rank{r}.pth'))
                 for r in range(world)]
    print(f'2 gloo ranks, 1 thread each, D={args.dim}, '
          f'{args.batch} images per rank, {args.steps} timed steps\n')
    print('| C | head | step s | x plain | peak MiB / rank | x plain |')
    print('|---|---|---|---|---|---|')
    for classes in () if args.loss_only else args.classes:
        base_t, base_m = (max(r[(classes, 'plain', 1.0)][i] for r in ranks)
                          for i in (0, 1))
        for kind, rate in (('plain', 1.0), ('pfc', 1.0), ('pfc', 0.3),
                           ('pfc', 0.1)):
            t, m = (max(r[(classes, kind, rate)][i] for r in ranks)
                    for i in (0, 1))
            name = 'MarginHead (ArcFace, DDP)' if kind == 'plain' else \
                f'PartialFCHead r={rate:g}'
            print(f'| {classes:,} | {name} | {t:.3f} | {t / base_t:.2f} | '
                  f'{m / 2**20:,.0f} | {m / base_m:.2f} |')
    loss = {k: max(r['loss'][k] for r in ranks) for k in ranks[0]['loss']}
    print(f'\nlogit losses on B={args.batch * world} x C='
          f'{args.loss_classes:,} (sharded over 2 ranks), fwd + bwd:\n')
    print('| loss | step s | x sharded KD |')
    print('|---|---|---|')
    for key, name in (('kd', 'ShardedKDLoss'), ('gkd', 'ShardedGKDLoss'),
                      ('gathered_gkd', 'GKDLoss on all-gathered logits')):
        print(f'| {name} | {loss[key]:.3f} | {loss[key] / loss["kd"]:.2f} |')


if __name__ == '__main__':
    main()

"""Per-rank memory of the Partial FC heads (docs/partial_fc.md "Memory
model"), from mmfacekd.models.heads.partial_fc_memory, as a markdown table.

    python tools/analysis/partial_fc_memory.py              # the docs table
    python tools/analysis/partial_fc_memory.py --check      # vs a real step
"""
import argparse
from typing import List, Optional

from mmfacekd.models.heads.partial_fc_memory import (
    measure_partial_fc_memory,
    partial_fc_memory,
)

DATASETS = (('MS1MV2', 85742), ('WebFace42M', 2059906))
MIB = 2**20


def table(dim: int = 512, batch_per_gpu: int = 128,
          worlds=(8, 64), rates=(1.0, 0.3, 0.1), dtype='float32') -> str:
    """The markdown table of the docs (MiB per rank, largest rank)."""
    lines = [
        '| data set (C) | GPUs | r | C_s / rank | student weight = grad = '
        'momentum | student logits | student step peak | teacher weight | '
        'teacher logits | GKD loss | total |',
        '|---|---|---|---|---|---|---|---|---|---|---|']
    for name, classes in DATASETS:
        for world in worlds:
            for rate in rates:
                m = partial_fc_memory(classes, dim, world, rate,
                                      batch_per_gpu * world, dtype)
                cells = [m[k] / MIB for k in (
                    'student_weight', 'student_logits', 'student_step_peak',
                    'teacher_weight', 'teacher_logits', 'loss_peak',
                    'total')]
                lines.append(
                    f'| {name} ({classes:,}) | {world} | {rate:g} | '
                    f'{m["kept_per_rank"]:,} | '
                    + ' | '.join(f'{v:,.0f}' for v in cells) + ' |')
    return '\n'.join(lines)


def check(sizes=((24000, 128, 256, 1.0), (24000, 128, 256, 0.3),
                 (24000, 512, 16, 1.0), (24000, 256, 64, 0.1))) -> str:
    """Prediction vs the measured peak of a real step, one process."""
    lines = ['| C | D | B | r | key | predicted MB | measured MB | error |',
             '|---|---|---|---|---|---|---|---|']
    for c, d, b, r in sizes:
        got = measure_partial_fc_memory(c, d, r, b)
        pred = partial_fc_memory(c, d, 1, r, b)
        for key in ('student_step_peak', 'teacher_fwd_peak', 'loss_peak'):
            lines.append(f'| {c} | {d} | {b} | {r:g} | {key} | '
                         f'{pred[key] / 1e6:.1f} | {got[key] / 1e6:.1f} | '
                         f'{100 * (pred[key] / got[key] - 1):+.1f} % |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dim', type=int, default=512)
    parser.add_argument('--batch-per-gpu', type=int, default=128)
    parser.add_argument('--dtype', default='float32')
    parser.add_argument('--check', action='store_true',
                        help='compare with a measured CPU step instead')
    args = parser.parse_args(argv)
    if args.check:
        print(check())
    else:
        print(table(args.dim, args.batch_per_gpu, dtype=args.dtype))


if __name__ == '__main__':
    main()

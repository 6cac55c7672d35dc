"""Time the two exact GKD selections (eq. 2-3): ``sort`` vs ``band``.

Example::

    python tools/analysis/benchmark_gkd_selection.py --threads 2
    python tools/analysis/benchmark_gkd_selection.py --num-classes 300 \\
        --batch-size 64 --repeat 20

For each (regime, C, T) cell it times, interleaved and on the same logits:

* ``select``: the per-sample grouping alone (k by eq. 3 and the float mask
  of Phi, ``group_classes``), for ``selection='sort'`` and ``'band'``;
* ``step``: a full ``GKDLoss`` forward + backward with either selection;

and prints the medians (ms) and the ratio sort / band (> 1: band is
faster). ``diff k/mask``: rows where the two disagree on k / on the mask
(float32 sums in another order may move k by one at a rounding tie; both
are then within rounding of the float64 argmin). Logits are
those of ``benchmark_kd_losses.py`` (``init``: fresh network, large k;
``trained``: k from 1 to thousands). The numbers decide
``selection='auto'`` on CPU (``BAND_MIN_CLASSES`` in
``mmfacekd/models/losses/gkd/selection.py``).
"""
import argparse
import os.path as osp
import statistics
import sys
import time

import torch

from mmfacekd.models.losses import GKDLoss
from mmfacekd.models.losses.gkd.selection import group_classes
from mmfacekd.models.losses.gkd.softmax import softmax_stats

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from benchmark_kd_losses import make_logits  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Benchmark the sort and band GKD selections.')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--num-classes', type=int, nargs='+',
                        default=[300, 10000, 85742])
    parser.add_argument('--temperature', type=float, nargs='+',
                        default=[1.0, 4.0])
    parser.add_argument('--regime', nargs='+', choices=['init', 'trained'],
                        default=['init', 'trained'])
    parser.add_argument('--repeat', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--tau', type=float, default=0.93)
    parser.add_argument('--no-step', action='store_true',
                        help='time the selection only')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def time_cell(student, teacher, temperature, tau, args):
    """Median ms per task and selection, plus whether results agree."""
    stats = softmax_stats(student, temperature)
    losses = {sel: GKDLoss(tau=tau, temperature=temperature, selection=sel)
              for sel in ('sort', 'band')}
    leaf = student.clone().requires_grad_(True)

    def select(sel):
        return group_classes(student, stats, tau=tau, selection=sel)

    def step(sel):
        losses[sel](leaf, teacher)['loss'].backward()
        leaf.grad = None

    tasks = {'select': select} if args.no_step else {'select': select,
                                                     'step': step}
    times = {(t, s): [] for t in tasks for s in ('sort', 'band')}
    for it in range(args.warmup + args.repeat):
        for (task, sel), acc in times.items():
            _sync(args.device)
            start = time.perf_counter()
            tasks[task](sel)
            _sync(args.device)
            if it >= args.warmup:
                acc.append((time.perf_counter() - start) * 1000)
    a, b = select('sort'), select('band')
    same_k = a.k == b.k
    diff = f'{int((~same_k).sum())}/{int((a.mask != b.mask).any(1).sum())}'
    return {key: statistics.median(v) for key, v in times.items()}, \
        float(a.k.float().mean()), diff


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    print(f'torch {torch.__version__}, device={args.device}, '
          f'threads={torch.get_num_threads()}, B={args.batch_size}, '
          f'tau={args.tau}, float32, median of {args.repeat} '
          f'(+{args.warmup} warm-up), interleaved; ratio = sort / band')
    cols = ['regime ', '     C', '  T', '     k', 'select sort', 'band',
            'ratio']
    if not args.no_step:
        cols += ['step sort', 'band', 'ratio']
    cols.append('diff k/mask')
    header = ' '.join(f'{c:>11s}' if i > 3 else c for i, c in enumerate(cols))
    print(header)
    print('-' * len(header))
    for regime in args.regime:
        for num_classes in args.num_classes:
            student, teacher, _ = make_logits(regime, args.batch_size,
                                              num_classes, 64.0, 0.4,
                                              args.device, torch.float32,
                                              gen)
            for temp in args.temperature:
                med, k_mean, diff = time_cell(student, teacher, temp,
                                              args.tau, args)
                cells = [f'{regime:7s}', f'{num_classes:6d}', f'{temp:3g}',
                         f'{k_mean:6.0f}']
                for task in ('select', 'step'):
                    if (task, 'sort') not in med:
                        continue
                    srt, bnd = med[(task, 'sort')], med[(task, 'band')]
                    cells += [f'{srt:11.1f}', f'{bnd:11.1f}',
                              f'{srt / bnd:11.2f}']
                cells.append(f'{diff:>11s}')
                print(' '.join(cells), flush=True)


if __name__ == '__main__':
    main()

"""Time forward + backward of KDLoss and GKDLoss on face-recognition sized
logits.

Example::

    python tools/analysis/benchmark_kd_losses.py --threads 2
    python tools/analysis/benchmark_kd_losses.py --num-classes 85742 \\
        --regime init --temperature 1 4 --repeat 10

Logits are ``s * cos`` with ``s = 64`` (``--scale``), for the student (which
requires grad) and the teacher. Regimes (``--regime``):

* ``init``: cosines of random unit vectors in 512-d, ``cos ~ N(0,
  1/sqrt(512))`` for every class (a freshly initialised network). The
  student's mass is spread over thousands of classes, so the per-sample GKD
  ``k`` is large (about 9 % of C): the hardest case for the k search.
* ``trained``: non-target cosines ``N(0, 0.05)`` (teacher and student
  correlated), target cosine ``U(0.4, 0.9)`` for the teacher and
  ``U(0.1, 0.8)`` for the student, CosFace margin ``m`` (``--margin``)
  subtracted from both target logits; ``k`` ranges from 1 to thousands.

All losses of one (regime, C, T) cell are timed in interleaved order, so a
fluctuating machine load hits them alike; the table reports the median
(and, with ``--show-min``, the minimum) over ``--repeat`` iterations and the
ratio GKD / KD at the same temperature. ``GKD-ps`` is the default per-sample
GKD, ``GKD-ps/nows`` the same without the CPU workspace
(``reuse_buffers=False``), ``GKD-batch`` / ``GKD-fixed`` the authors' modes
(with the target forced into the primary group). ``--selection`` picks the
exact k search of GKD (``tools/analysis/benchmark_gkd_selection.py``
compares them).
"""
import argparse
import math
import statistics
import time

import torch

from mmfacekd.models.losses import GKDLoss, KDLoss


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Benchmark KDLoss vs GKDLoss (forward + backward).')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument(
        '--num-classes', type=int, nargs='+', default=[85742, 360232])
    parser.add_argument('--repeat', type=int, default=7,
                        help='timed iterations per loss')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument(
        '--regime', nargs='+', choices=['init', 'trained'],
        default=['init', 'trained'])
    parser.add_argument(
        '--temperature', type=float, nargs='+', default=[1.0, 4.0],
        help='temperature(s) shared by KD and GKD')
    parser.add_argument(
        '--modes', nargs='+',
        choices=['per_sample', 'per_sample_nows', 'batch', 'fixed'],
        default=['per_sample', 'per_sample_nows', 'batch', 'fixed'])
    parser.add_argument(
        '--selection', choices=['auto', 'sort', 'band'], default='auto',
        help="GKDLoss(selection=...): how k and the primary group are found")
    parser.add_argument('--scale', type=float, default=64.0)
    parser.add_argument('--margin', type=float, default=0.4)
    parser.add_argument('--dtype', choices=['float32', 'float64'],
                        default='float32')
    parser.add_argument('--show-min', action='store_true')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def make_logits(regime: str, batch: int, num_classes: int, scale: float,
                margin: float, device: str, dtype: torch.dtype,
                gen: torch.Generator):
    """Return (student, teacher, labels); logits of shape (B, C)."""
    shape = (batch, num_classes)
    labels = torch.randint(num_classes, (batch, ), generator=gen)
    if regime == 'init':
        sigma = 1.0 / math.sqrt(512)
        cos_s = torch.randn(shape, generator=gen) * sigma
        cos_t = torch.randn(shape, generator=gen) * sigma
    else:
        common = torch.randn(shape, generator=gen) * 0.05
        cos_s = 0.7 * common + 0.714 * 0.05 * torch.randn(shape, generator=gen)
        cos_t = common
        rows = torch.arange(batch)
        cos_t[rows, labels] = 0.4 + 0.5 * torch.rand(batch, generator=gen)
        cos_s[rows, labels] = 0.1 + 0.7 * torch.rand(batch, generator=gen)
        cos_t[rows, labels] -= margin
        cos_s[rows, labels] -= margin
    student = (scale * cos_s.clamp(-1, 1)).to(device=device, dtype=dtype)
    teacher = (scale * cos_t.clamp(-1, 1)).to(device=device, dtype=dtype)
    return student, teacher, labels.to(device)


def build_losses(modes, temperature, selection='auto'):
    losses = {'KD': KDLoss(temperature=temperature)}
    common = dict(temperature=temperature, selection=selection)
    for mode in modes:
        if mode == 'per_sample':
            losses['GKD-ps'] = GKDLoss(**common)
        elif mode == 'per_sample_nows':
            losses['GKD-ps/nows'] = GKDLoss(**common, reuse_buffers=False)
        else:
            losses[f'GKD-{mode}'] = GKDLoss(
                **common, k_mode=mode, force_target=True)
    return losses


def time_cell(losses, student, teacher, labels, warmup, repeat, device):
    leaf = student.clone().requires_grad_(True)

    def step(loss_fn):
        if isinstance(loss_fn, GKDLoss):
            out = loss_fn(leaf, teacher, labels)['loss']
        else:
            out = loss_fn(leaf, teacher)
        out.backward()
        leaf.grad = None

    times = {name: [] for name in losses}
    for it in range(warmup + repeat):
        for name, loss_fn in losses.items():
            if device == 'cuda':
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(loss_fn)
            if device == 'cuda':
                torch.cuda.synchronize()
            if it >= warmup:
                times[name].append((time.perf_counter() - start) * 1000)
    return times


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(args.seed)
    print(f'torch {torch.__version__}, device={args.device}, '
          f'threads={torch.get_num_threads()}, B={args.batch_size}, '
          f'dtype={args.dtype}, selection={args.selection}, '
          f'median of {args.repeat} '
          f'(+{args.warmup} warm-up), losses interleaved')
    header = None
    for regime in args.regime:
        for num_classes in args.num_classes:
            student, teacher, labels = make_logits(
                regime, args.batch_size, num_classes, args.scale, args.margin,
                args.device, dtype, gen)
            with torch.no_grad():
                k_mean = float(GKDLoss()(student, teacher)['k_mean'])
            for temp in args.temperature:
                losses = build_losses(args.modes, temp, args.selection)
                times = time_cell(losses, student, teacher, labels,
                                  args.warmup, args.repeat, args.device)
                med = {k: statistics.median(v) for k, v in times.items()}
                low = {k: min(v) for k, v in times.items()}
                if header is None:
                    cols = [f'{"regime":8s} {"C":>7s} {"T":>3s} {"k":>6s}']
                    for name in losses:
                        cols.append(f'{name + " ms":>15s}')
                        if name != 'KD':
                            cols.append(f'{"ratio":>6s}')
                    header = ' '.join(cols)
                    print(header)
                    print('-' * len(header))
                cells = [f'{regime:8s} {num_classes:7d} {temp:3g} '
                         f'{k_mean:6.0f}']
                for name in losses:
                    val = f'{med[name]:.1f}'
                    if args.show_min:
                        val += f'/{low[name]:.0f}'
                    cells.append(f'{val:>15s}')
                    if name != 'KD':
                        cells.append(f'{med[name] / med["KD"]:6.2f}')
                print(' '.join(cells), flush=True)


if __name__ == '__main__':
    main()

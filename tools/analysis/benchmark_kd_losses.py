"""Time forward + backward of KDLoss and GKDLoss on face-recognition sized
logits.

Example::

    python tools/analysis/benchmark_kd_losses.py --threads 2
    python tools/analysis/benchmark_kd_losses.py --num-classes 85742 \
        --regime init trained --temperature 1 4

Logits are ``s * cos`` with ``s = 64`` (``--scale``). Regimes:

* ``init``: cosines of random unit vectors in 512-d, i.e. ``cos ~ N(0,
  1/sqrt(512))`` for every class of the student and the teacher (a freshly
  initialised network; the student's probability mass is spread over
  thousands of classes, so the per-sample GKD ``k`` is large, ~9 % of C).
* ``trained``: non-target cosines ``N(0, 0.05)`` (teacher and student
  correlated), target cosine ``U(0.4, 0.9)`` for the teacher and
  ``U(0.1, 0.8)`` for the student, CosFace margin ``m`` subtracted from the
  target logit of both (``--margin``); ``k`` ranges from 1 to thousands.

The GKD/KD ratio is reported per (regime, C, T) against KDLoss at the same
temperature.
"""
import argparse
import math
import statistics
import time

import torch

from mmfacekd.models.losses import GKDLoss, KDLoss


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument(
        '--num-classes', type=int, nargs='+', default=[85742, 360232])
    parser.add_argument('--repeat', type=int, default=5,
                        help='timed iterations (median reported)')
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
        '--modes', nargs='+', choices=['per_sample', 'batch', 'fixed'],
        default=['per_sample', 'batch', 'fixed'])
    parser.add_argument('--scale', type=float, default=64.0)
    parser.add_argument('--margin', type=float, default=0.4)
    parser.add_argument('--dtype', choices=['float32', 'float64'],
                        default='float32')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def make_logits(regime: str, batch: int, num_classes: int, scale: float,
                margin: float, device: str, dtype: torch.dtype,
                gen: torch.Generator):
    """Return (student, teacher, labels) logits of shape (B, C)."""
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


def time_fwd_bwd(loss_fn, student, teacher, labels, warmup, repeat, device):
    leaf = student.clone().requires_grad_(True)
    is_gkd = isinstance(loss_fn, GKDLoss)

    def step():
        if is_gkd:
            out = loss_fn(leaf, teacher, labels)['loss']
        else:
            out = loss_fn(leaf, teacher)
        out.backward()
        leaf.grad = None

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeat):
        if device == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device == 'cuda':
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(args.seed)
    print(f'torch {torch.__version__}, device={args.device}, '
          f'threads={torch.get_num_threads()}, B={args.batch_size}, '
          f'dtype={args.dtype}, median of {args.repeat} '
          f'(+{args.warmup} warm-up)')
    header = (f'{"regime":8s} {"C":>7s} {"T":>4s} {"KD ms":>8s} ' +
              ' '.join(f'{"GKD-" + m + " ms":>18s} {"ratio":>6s}'
                       for m in args.modes) + f' {"k_mean":>8s}')
    print(header)
    print('-' * len(header))
    for regime in args.regime:
        for num_classes in args.num_classes:
            student, teacher, labels = make_logits(
                regime, args.batch_size, num_classes, args.scale, args.margin,
                args.device, dtype, gen)
            for temp in args.temperature:
                kd_ms = time_fwd_bwd(
                    KDLoss(temperature=temp), student, teacher, labels,
                    args.warmup, args.repeat, args.device)
                cells = []
                k_mean = float('nan')
                for mode in args.modes:
                    gkd = GKDLoss(
                        temperature=temp, k_mode=mode,
                        force_target=mode != 'per_sample')
                    ms = time_fwd_bwd(gkd, student, teacher, labels,
                                      args.warmup, args.repeat, args.device)
                    if mode == 'per_sample':
                        with torch.no_grad():
                            k_mean = float(
                                gkd(student, teacher, labels)['k_mean'])
                    cells.append(f'{ms:18.1f} {ms / kd_ms:6.2f}')
                print(f'{regime:8s} {num_classes:7d} {temp:4g} {kd_ms:8.1f} '
                      + ' '.join(cells) + f' {k_mean:8.0f}')


if __name__ == '__main__':
    main()

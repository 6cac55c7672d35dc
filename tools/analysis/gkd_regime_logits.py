"""GKD's regime on trained-like logits at MS1MV2 size, without a checkpoint.

Draws cosines shaped like a trained face recognizer's (the target at
``--target-cos`` ± 0.05, the other classes ~N(0, 0.06)), a teacher 0.1 more
confident, and prints what :class:`GKDLoss` sees for each temperature and
logit kind: the primary-group size k (eq. 3), the teacher's primary mass
p_Φ^T and the Primary-/Binary-KD terms. ``cos`` = s·cos θ (the
``student/teacher.logits`` inputs), ``margin`` = ArcFace margin logits
s·cos(θ_y + m) at the target (``*.margin_logits``, the authors' code).

    python tools/analysis/gkd_regime_logits.py --classes 85742 --s 64

For a real checkpoint use ``tools/analysis/gkd_regime.py CONFIG CKPT``.
"""
import argparse

import torch

from mmfacekd.models.losses import GKDLoss


def trained_like(batch: int, classes: int, target_cos: float,
                 gt: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Cosines with the target class at ``target_cos`` (± 0.05)."""
    cos = 0.06 * torch.randn(batch, classes, generator=gen)
    cos[torch.arange(batch), gt] = target_cos + 0.05 * torch.randn(
        batch, generator=gen)
    return cos


def with_margin(cos: torch.Tensor, gt: torch.Tensor, m: float) -> torch.Tensor:
    """ArcFace: cos(θ_y + m) at the target."""
    out = cos.clone()
    rows = torch.arange(cos.size(0))
    out[rows, gt] = torch.cos(torch.acos(cos[rows, gt].clamp(-1, 1)) + m)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--classes', type=int, default=85742)
    p.add_argument('--s', type=float, default=64.0)
    p.add_argument('--m', type=float, default=0.5)
    p.add_argument('--target-cos', type=float, nargs='+', default=[0.4, 0.6])
    p.add_argument('--temperatures', type=float, nargs='+',
                   default=[1.0, 2.0, 4.0])
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args()
    gen = torch.Generator().manual_seed(args.seed)
    print('| target cos | logits | T | k mean | k min | k max | p_phi_t | '
          'primary_kd | binary_kd |')
    print('|---|---|---|---|---|---|---|---|---|')
    for target in args.target_cos:
        gt = torch.randint(0, args.classes, (args.batch, ), generator=gen)
        s_cos = trained_like(args.batch, args.classes, target, gt, gen)
        t_cos = trained_like(args.batch, args.classes, target + 0.1, gt, gen)
        kinds = dict(cos=(s_cos, t_cos),
                     margin=(with_margin(s_cos, gt, args.m),
                             with_margin(t_cos, gt, args.m)))
        for kind, (zs, zt) in kinds.items():
            for temp in args.temperatures:
                with torch.no_grad():
                    out = GKDLoss(temperature=temp)(args.s * zs,
                                                    args.s * zt, gt)
                print(f'| {target:g} | {kind} | {temp:g} | '
                      f'{out["k_mean"]:.1f} | {out["k_min"]:.0f} | '
                      f'{out["k_max"]:.0f} | {out["p_phi_t"]:.3f} | '
                      f'{out["primary_kd"]:.4f} | {out["binary_kd"]:.4f} |')


if __name__ == '__main__':
    main()

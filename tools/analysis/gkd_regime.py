"""Check the regime of a GKD run: is the primary group more than one class?

Runs the distiller of CONFIG (its teacher from the config, the student from
CKPT, e.g. a trained or partly trained distiller or a student checkpoint)
in ``loss`` mode on training batches, without updating anything, and prints
the statistics of every ``GKDLoss`` of the config: the primary-group size
:math:`k` (eq. 3: mean, std, min, max), the teacher's primary mass
:math:`p^T_\\Phi` and the Primary-/Binary-KD terms, for each temperature and
logit kind asked for. A mean :math:`k` near 1 means Primary-KD is a KL over
one class (zero) and GKD degenerates to a small binary term.

    python tools/analysis/gkd_regime.py configs/gkd/gkd_r18_mbf_synth.py \\
        work_dirs/gkd/epoch_4.pth --temperatures 1 4 --logits cos margin

``--logits cos`` reads ``student/teacher.logits`` (s·cos θ), ``margin`` the
margin logits (s·cos(θ + m) at the target), as the authors' code.
"""
import argparse
import itertools
import json
from typing import Dict, List

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from mmfacekd.registry import MODELS
from mmfacekd.utils import (
    load_checkpoint_safely,
    register_all_modules,
    register_safe_globals,
)

_LOGITS = dict(cos='logits', margin='margin_logits')


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config', help='a distiller config with a GKDLoss')
    p.add_argument('checkpoint', nargs='?', help='distiller checkpoint (or '
                   'a student checkpoint); default: the untrained student')
    p.add_argument('--temperatures', type=float, nargs='+', default=None,
                   help='temperatures to try (default: the config\'s)')
    p.add_argument('--logits', nargs='+', choices=sorted(_LOGITS),
                   default=None, help='logit kinds to try (default: the '
                   'config\'s)')
    p.add_argument('--batches', type=int, default=10)
    p.add_argument('--out', help='write the statistics as JSON here')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args()


def load_student(model: torch.nn.Module, path: str) -> None:
    """Load a distiller checkpoint, or a plain student one, into ``model``."""
    state = load_checkpoint_safely(path)
    state = state.get('state_dict', state)
    if any(k.startswith('student.') for k in state):
        state = {k[len('student.'):]: v for k, v in state.items()
                 if k.startswith('student.')}
    model.student.load_state_dict(state, strict=True)


@torch.no_grad()
def regime(model: torch.nn.Module, loader, batches: int) -> Dict[str, float]:
    """Mean over ``batches`` of every ``distill.<gkd>.*`` statistic."""
    sums: Dict[str, float] = {}
    mins: Dict[str, float] = {}
    maxs: Dict[str, float] = {}
    for data in itertools.islice(loader, batches):
        data = model.data_preprocessor(data, True)
        out = model(**data, mode='loss')
        for key, value in out.items():
            if not key.startswith('distill.') or key.count('.') < 2:
                continue
            v = float(value)
            sums[key] = sums.get(key, 0.0) + v / batches
            mins[key] = min(mins.get(key, v), v)
            maxs[key] = max(maxs.get(key, v), v)
    stats = dict(sums)
    for key in sums:
        if key.endswith('.k_min'):
            stats[key] = mins[key]
        elif key.endswith('.k_max'):
            stats[key] = maxs[key]
    return stats


def main() -> None:
    args = parse_args()
    register_all_modules()
    register_safe_globals()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    gkd = {name: loss for name, loss in cfg.model.distill_losses.items()
           if loss['type'] == 'GKDLoss'}
    if not gkd:
        raise SystemExit(f'{args.config}: model.distill_losses has no '
                         'GKDLoss; nothing to check.')
    loader_cfg = cfg.train_dataloader
    loader_cfg.num_workers = 0
    loader_cfg.persistent_workers = False
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    temps = args.temperatures or [None]
    kinds = args.logits or [None]
    rows: List[dict] = []
    for temp, kind in itertools.product(temps, kinds):
        model_cfg = cfg.model.copy()
        for name in gkd:
            loss = model_cfg.distill_losses[name]
            if temp is not None:
                loss.temperature = temp
            if kind is not None:
                loss.inputs.student_logits = f'student.{_LOGITS[kind]}'
                loss.inputs.teacher_logits = f'teacher.{_LOGITS[kind]}'
        model = MODELS.build(model_cfg)
        if args.checkpoint:
            load_student(model, args.checkpoint)
        model.eval()
        stats = regime(model, loader, args.batches)
        for name in gkd:
            loss = model_cfg.distill_losses[name]
            row = dict(loss=name, temperature=loss.temperature,
                       logits=loss.inputs.student_logits)
            row.update({k.split('.')[-1]: v for k, v in stats.items()
                        if k.startswith(f'distill.{name}.')})
            rows.append(row)
    keys = ['loss', 'temperature', 'logits', 'k_mean', 'k_std', 'k_min',
            'k_max', 'p_phi_t', 'primary_kd', 'binary_kd']
    print('| ' + ' | '.join(keys) + ' |')
    print('|' + '---|' * len(keys))
    for row in rows:
        cells = [f'{row[k]:.4g}' if isinstance(row.get(k), float)
                 else str(row.get(k, '')) for k in keys]
        print('| ' + ' | '.join(cells) + ' |')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()

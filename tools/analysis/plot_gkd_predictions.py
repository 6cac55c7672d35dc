"""Draw GKD Fig. 1 for one training sample of a checkpoint pair.

The ranked softened predictions of the teacher (descending) and the
student's on the same class order, the primary / secondary split at
cumulative probability tau (k of GKD eq. 3, by the loss's own selection
code), log scale; the title gives k, p_Phi^T and T.

    # a teacher and a student, each a recognizer config + checkpoint
    python tools/analysis/plot_gkd_predictions.py \\
        configs/demo/arcface_r18_synth.py \\
        work_dirs/demo/arcface_r18_synth/epoch_6.pth \\
        configs/demo/arcface_mbf_synth.py \\
        work_dirs/demo/arcface_mbf_synth/epoch_4.pth --sample-idx 0 \\
        --out fig1.png
    # a distiller config + its checkpoint (teacher from the config's
    # teacher_ckpt, student from the checkpoint)
    python tools/analysis/plot_gkd_predictions.py \\
        configs/demo/gkd_r18_mbf_synth.py \\
        work_dirs/demo/gkd_r18_mbf_synth/epoch_4.pth

tau, T and the logit kind default to the distiller config's GKDLoss, else
to the project's GKD loss (configs/_base_/losses/gkd.py: tau 0.93, T 4,
margin logits). ``--logits margin`` uses s*cos(theta + m) at the target
(``*.margin_logits``), ``--logits cos`` the plain s*cos(theta)
(``*.logits``). ``--rank-by student`` ranks by the student, as the paper's
loss does; the default ranks by the teacher, as Fig. 1.
"""
import argparse
import json
import os.path as osp
import random
from contextlib import nullcontext
from typing import Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import pseudo_collate

from mmfacekd.registry import DATASETS, MODELS
from mmfacekd.utils import (
    load_checkpoint_safely,
    register_all_modules,
    register_safe_globals,
)
from mmfacekd.visualization import gkd_prediction, plot_gkd_prediction

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GKD_LOSS_CFG = osp.join(ROOT, 'configs/_base_/losses/gkd.py')
LOGITS = dict(margin='margin_logits', cos='logits')


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('paths', nargs='+', metavar='CFG_OR_CKPT',
                   help='TEACHER_CFG TEACHER_CKPT STUDENT_CFG STUDENT_CKPT, '
                   'or DISTILLER_CFG DISTILLER_CKPT')
    p.add_argument('--sample-idx', type=int, default=0,
                   help='index into the training set. Default: 0')
    p.add_argument('--tau', type=float, help='tau of eq. 3')
    p.add_argument('--T', dest='temperature', type=float,
                   help='temperature of the softened predictions')
    p.add_argument('--logits', choices=sorted(LOGITS),
                   help='margin: s*cos(theta+m) at the target (the project '
                   "GKD loss); cos: s*cos(theta). Default: the loss's")
    p.add_argument('--rank-by', choices=('teacher', 'student'),
                   default='teacher', help='network whose prediction ranks '
                   'the classes. Default: teacher (Fig. 1)')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the training pipeline (random flip)')
    p.add_argument('--out', default='gkd_predictions.png')
    p.add_argument('--json', help='also write the curves, k and p_phi_t')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='overrides for every config given (e.g. the data '
                   'root)')
    args = p.parse_args(argv)
    if len(args.paths) not in (2, 4):
        p.error('give TEACHER_CFG TEACHER_CKPT STUDENT_CFG STUDENT_CKPT or '
                f'DISTILLER_CFG DISTILLER_CKPT, got {len(args.paths)} paths')
    return args


def load_config(path: str, options: Optional[dict]) -> Config:
    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    return cfg


def load_weights(module: torch.nn.Module, path: str, prefix: str) -> None:
    """Load ``path`` (``weights_only``) into ``module`` strictly; keys under
    ``prefix`` (e.g. ``student.`` of a distiller checkpoint) when present."""
    ckpt = load_checkpoint_safely(path)
    state = ckpt.get('state_dict', ckpt)
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items()
                 if k.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SystemExit(f'{path}: does not match the {prefix[:-1]} model of '
                         f'its config (strict load): {e}') from None


def gkd_defaults(model_cfg: Optional[dict]) -> dict:
    """tau, T and logit kind of the config's first GKDLoss, else of
    configs/_base_/losses/gkd.py."""
    losses = (model_cfg or {}).get('distill_losses') or {}
    gkd = [v for v in losses.values() if v.get('type') == 'GKDLoss']
    loss = gkd[0] if gkd else Config.fromfile(GKD_LOSS_CFG).gkd_loss
    src = loss.get('inputs', {}).get('teacher_logits', 'teacher.logits')
    kind = 'margin' if src.endswith('margin_logits') else 'cos'
    return dict(tau=loss.get('tau', 0.93),
                temperature=loss.get('temperature', 1.0), logits=kind)


def build_networks(args: argparse.Namespace):
    """``(teacher, student, teacher preprocessor, student preprocessor,
    train dataset config, defaults)``."""
    opts = args.cfg_options
    if len(args.paths) == 2:
        cfg = load_config(args.paths[0], opts)
        if cfg.model.get('type') != 'FaceDistiller':
            raise SystemExit(f'{args.paths[0]}: model.type is '
                             f'{cfg.model.get("type")!r}; with two paths '
                             'give a FaceDistiller config + checkpoint, '
                             'else TEACHER_CFG TEACHER_CKPT STUDENT_CFG '
                             'STUDENT_CKPT.')
        cfg.model.teacher_cache = None  # the teacher backbone must run
        distiller = MODELS.build(cfg.model)  # loads model.teacher_ckpt
        load_weights(distiller.student, args.paths[1], 'student.')
        pre = distiller.data_preprocessor
        return (distiller.teacher, distiller.student, pre, pre,
                cfg.train_dataloader.dataset, gkd_defaults(cfg.model))
    nets = []
    for cfg_path, ckpt, side in ((*args.paths[:2], 'teacher'),
                                 (*args.paths[2:], 'student')):
        cfg = load_config(cfg_path, opts)
        model_cfg = cfg.model
        if model_cfg.get('type') == 'FaceDistiller':
            model_cfg = model_cfg[side]  # the side of a distiller config
        net = MODELS.build(model_cfg)
        load_weights(net, ckpt, f'{side}.')
        nets.append((net, cfg))
    (teacher, _), (student, s_cfg) = nets
    return (teacher, student, teacher.data_preprocessor,
            student.data_preprocessor, s_cfg.train_dataloader.dataset,
            gkd_defaults(None))


@torch.no_grad()
def sample_logits(net, preprocessor, sample: dict, kind: str
                  ) -> Tuple[torch.Tensor, int]:
    """One sample's logits of ``net`` (``kind`` = margin / cos) and label."""
    net.eval()
    data = preprocessor(pseudo_collate([sample]), False)
    gt = data['data_samples'][0].gt_label.reshape(-1).long()
    backbone = net.backbone
    # a prompted (APT) teacher's logits come without prompts, as in
    # FaceDistiller
    ctx = backbone.without_prompts() \
        if getattr(backbone, 'prompts_enabled', False) else nullcontext()
    with ctx:
        out = net.get_logits(net.extract_feat(data['inputs']), gt)
    return out[LOGITS[kind]][0], int(gt[0])


def main(argv=None) -> None:
    args = parse_args(argv)
    register_all_modules()
    register_safe_globals()
    teacher, student, t_pre, s_pre, data_cfg, defaults = build_networks(args)
    tau = defaults['tau'] if args.tau is None else args.tau
    temperature = defaults['temperature'] if args.temperature is None \
        else args.temperature
    kind = args.logits or defaults['logits']
    dataset = DATASETS.build(data_cfg)
    if not 0 <= args.sample_idx < len(dataset):
        raise SystemExit(f'--sample-idx {args.sample_idx}: the training set '
                         f'has {len(dataset)} samples.')
    random.seed(args.seed)
    np.random.seed(args.seed)
    sample = dataset[args.sample_idx]
    t_logits, gt = sample_logits(teacher, t_pre, sample, kind)
    s_logits, _ = sample_logits(student, s_pre, sample, kind)
    pred = gkd_prediction(s_logits, t_logits, tau, temperature,
                          args.rank_by, gt)
    plot_gkd_prediction(pred, args.out)
    print(f'sample {args.sample_idx} (class {gt}), {kind} logits, '
          f'T = {temperature:g}, tau = {tau:g}, ranked by {args.rank_by}: '
          f'k = {pred.k} of {len(pred.order)}, p_phi_t = {pred.p_phi_t:.4f}'
          f', target rank {pred.target_rank}\nsaved {args.out}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(sample_idx=args.sample_idx, gt_label=gt,
                           logits=kind, tau=tau, temperature=temperature,
                           rank_by=args.rank_by, k=pred.k,
                           p_phi_t=pred.p_phi_t,
                           target_rank=pred.target_rank,
                           order=pred.order.tolist(),
                           teacher=pred.teacher.tolist(),
                           student=pred.student.tolist()), f)


if __name__ == '__main__':
    main()

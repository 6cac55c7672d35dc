"""ROC curves of an IJB-style set for several models on one plot.

Each curve is the IJB metric's own ROC (insightface's rule, see
mmfacekd/evaluation/functional/ijb.py) from a model's pair scores, either
saved by tools/test.py (``<work_dir>/scores/<set>.npz``) or computed here by
evaluating a checkpoint on the config's IJB test sets:

    # the score dumps `make demo` leaves (work_dirs/demo/<config>/scores)
    python tools/analysis/plot_roc.py \\
        --scores teacher=work_dirs/demo/arcface_r18_synth/scores \\
        --scores student=work_dirs/demo/arcface_mbf_synth/scores \\
        --scores GKD=work_dirs/demo/gkd_r18_mbf_synth/scores --out roc.png
    # or evaluate checkpoints (NAME=CFG:CKPT; a distiller's student after
    # tools/misc/extract_student.py, with the student's config)
    python tools/analysis/plot_roc.py \\
        --suite configs/_base_/datasets/ijbc.py \\
        --ckpt MBF=configs/arcface/arcface_mbf_ms1mv2.py:checkpoints/mbf.pth \\
        --ckpt GKD=configs/arcface/arcface_mbf_ms1mv2.py:checkpoints/gkd.pth

Log-x TPR against FPR; the legend gives TPR@FPR (default 1e-4 and 1e-5) as
the metric reports them. ``<out>.json`` (beside the PNG) holds the same
numbers and, for ``--ckpt`` models, the metric's own values.
"""
import argparse
import json
import os.path as osp
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from mmfacekd.evaluation.functional.identification import fpr_key
from mmfacekd.utils import register_all_modules, register_safe_globals
from mmfacekd.visualization import (
    load_ijb_scores,
    plot_roc_curves,
    roc_from_scores,
)


def name_value(text: str, what: str) -> Tuple[str, str]:
    name, sep, value = text.partition('=')
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(
            f'{text!r}: expected NAME={what}')
    return name, value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--ckpt', action='append', default=[],
                   type=lambda s: name_value(s, 'CFG:CKPT'),
                   metavar='NAME=CFG:CKPT', help='evaluate CKPT with the IJB '
                   'test sets of CFG (repeatable)')
    p.add_argument('--scores', action='append', default=[],
                   type=lambda s: name_value(s, 'PATH'),
                   metavar='NAME=PATH', help='an IJB score dump <set>.npz or '
                   'a tools/test.py <work_dir>/scores folder (repeatable)')
    p.add_argument('--suite', help='a config whose test_dataloader and '
                   'test_evaluator replace those of every --ckpt config, '
                   'as in tools/test.py (e.g. configs/_base_/datasets/'
                   'ijbc.py)')
    p.add_argument('--set', dest='set_name', help='IJB set name (needed when '
                   'a config or folder has several)')
    p.add_argument('--fprs', type=float, nargs='+', default=[1e-4, 1e-5],
                   help='FPRs whose TPR goes into the legend')
    p.add_argument('--out', default='roc.png')
    p.add_argument('--title', default=None)
    p.add_argument('--work-dir', default='work_dirs/plot_roc',
                   help='where --ckpt evaluations write their scores')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='overrides for every --ckpt config')
    args = p.parse_args(argv)
    if not args.ckpt and not args.scores:
        p.error('give at least one --ckpt NAME=CFG:CKPT or --scores '
                'NAME=PATH')
    return args


def _ijb_parts(dataset: dict) -> List[dict]:
    """The IJBDataset configs of a test set (inside ConcatDatasets too)."""
    if dataset.get('type') == 'ConcatDataset':
        return [d for part in dataset.get('datasets', [])
                for d in _ijb_parts(part)]
    return [dataset] if dataset.get('type') == 'IJBDataset' else []


def ijb_only(cfg: Config, set_name: Optional[str], source: str) -> str:
    """Restrict the config's test set and evaluator to one IJB set; return
    its name."""
    parts = _ijb_parts(cfg.test_dataloader.dataset)
    metrics = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) \
        else [cfg.test_evaluator]
    metrics = [m for m in metrics if m.get('type') == 'IJBMetric']
    names = [d.get('set_name') or d.get('name', 'ijbc') for d in parts]
    if set_name is None and len(names) == 1:
        set_name = names[0]
    if set_name not in names:
        raise SystemExit(f'{source}: test_dataloader has IJB sets {names}; '
                         + ('pass --set NAME' if set_name is None else
                            f'none is {set_name!r}') + '.')
    dataset = parts[names.index(set_name)]
    metric = [m for m in metrics if m.get('set_name', 'ijbc') == set_name]
    if not metric:
        raise SystemExit(f'{source}: test_evaluator has no IJBMetric with '
                         f'set_name={set_name!r}.')
    cfg.test_dataloader.dataset = dataset
    # the curve needs the scores only; no bootstrap intervals
    cfg.test_evaluator = dict(metric[0], ci_level=None, dump_scores=True,
                              scores_dir=None)
    return set_name


def evaluate(name: str, spec: str, args: argparse.Namespace
             ) -> Tuple[str, Dict[str, float]]:
    """Run CFG:CKPT on its IJB set; return the score dump and metrics."""
    cfg_path, sep, ckpt = spec.partition(':')
    if not sep or not osp.isfile(cfg_path) or not osp.isfile(ckpt):
        raise SystemExit(f'--ckpt {name}={spec}: expected CFG:CKPT, two '
                         'existing files.')
    cfg = Config.fromfile(cfg_path)
    if args.suite:
        suite = Config.fromfile(args.suite)
        cfg.test_dataloader = suite.test_dataloader
        cfg.test_evaluator = suite.test_evaluator
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    set_name = ijb_only(cfg, args.set_name, cfg_path)
    cfg.work_dir = osp.join(args.work_dir, name)
    cfg.load_from, cfg.resume = ckpt, False
    cfg.train_dataloader = cfg.train_cfg = cfg.optim_wrapper = None
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.param_scheduler = None
    metrics = Runner.from_cfg(cfg).test()
    return osp.join(cfg.work_dir, 'scores', f'{set_name}.npz'), metrics


def main(argv=None) -> None:
    args = parse_args(argv)
    register_all_modules(init_default_scope=False)
    register_safe_globals()
    curves, report = [], {}
    sources = [(n, s, None) for n, s in args.scores]
    for name, spec in args.ckpt:
        path, metrics = evaluate(name, spec, args)
        sources.append((name, path, metrics))
    for name, path, metrics in sources:
        set_name, scores, labels = load_ijb_scores(path, args.set_name)
        curve = roc_from_scores(name, scores, labels, args.fprs)
        curves.append(curve)
        report[name] = dict(set=set_name, scores=path, pairs=curve.n_pairs,
                            tpr_at_fpr={fpr_key(f): v * 100 for f, v in
                                        curve.tpr_at.items()})
        if metrics is not None:
            report[name]['metric'] = {k: v for k, v in metrics.items()
                                      if k.startswith(f'{set_name}/')}
        print(f'{name}: {set_name}, {curve.n_pairs} pairs, ' + ', '.join(
            f'TPR@{fpr_key(f)} = {v * 100:.2f} %'
            for f, v in curve.tpr_at.items()))
    sets = sorted({r['set'] for r in report.values()})
    plot_roc_curves(curves, args.out,
                    args.title or f'{", ".join(sets)} 1:1 verification ROC')
    with open(osp.splitext(args.out)[0] + '.json', 'w') as f:
        json.dump(report, f, indent=1)
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()

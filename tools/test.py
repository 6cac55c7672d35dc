"""Evaluate a checkpoint on the config's test sets; print and save metrics.

The config's test set may mix protocols (a ``ConcatDataset`` of verification
``.bin`` sets, IJB-B/C bundles, identification probe/distractor sets, masked
M-M/M-N variants) with one metric per protocol. At the end a summary row in
the papers' column order (IJB-C, IJB-B, MegaFace, LFW, CFP-FP, CPLFW,
AgeDB-30, CALFW, then any other set) is printed and saved as
``<work_dir>/summary.{md,json}`` next to the full metrics JSON.

    python tools/test.py CONFIG CKPT [--suite SUITE] [--cfg-options ...]
    tools/dist_test.sh CONFIG CKPT 8
"""
import argparse
import json
import os
import os.path as osp
import time

from mmengine.config import Config, DictAction
from mmengine.dist import is_main_process
from mmengine.runner import Runner

from mmfacekd.evaluation import write_summary
from mmfacekd.utils import (
    init_cpu_dist_if_needed,
    register_all_modules,
    register_safe_globals,
    shutdown_dist,
    tune_cpu_malloc,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir',
                        help='the dir to save evaluation results')
    parser.add_argument('--out', help='JSON file for the metrics (default: '
                        '<work_dir>/eval_<time>.json)')
    parser.add_argument('--amp', action='store_true', help='test under AMP')
    parser.add_argument('--suite', help='a config file whose test_dataloader '
                        'and test_evaluator replace the config\'s, e.g. '
                        'configs/_base_/datasets/paper_suite.py (all the '
                        'papers\' sets)')
    parser.add_argument('--name', help='row name in the summary table '
                        '(default: the config name)')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar while embedding')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, e.g. key=value a.b=value')
    parser.add_argument('--launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to the config; ``--cfg-options`` come last."""
    cfg.launcher = args.launcher
    if args.suite is not None:
        suite = Config.fromfile(args.suite)
        for key in ('test_dataloader', 'test_evaluator'):
            if key not in suite:
                raise SystemExit(f'--suite {args.suite} defines no {key}; a '
                                 'suite file needs test_dataloader and '
                                 'test_evaluator.')
            cfg[key] = suite[key]
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.amp:
        cfg.test_cfg.fp16 = True
    if not args.no_progress:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='EmbeddingProgressHook')]
    # last, so that they override --suite and the other options
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main() -> None:
    args = parse_args()
    register_all_modules(init_default_scope=False)
    register_safe_globals()  # weights_only loads of MMEngine checkpoints
    tune_cpu_malloc()  # CPU only: no mmap/munmap per activation
    cfg = merge_args(Config.fromfile(args.config), args)
    # gloo on CPU; a dead peer fails collectives after env_cfg.dist_cfg.timeout
    init_cpu_dist_if_needed(cfg.launcher, int(
        cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout', 1800)))
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    del runner  # DDP's reducer must go before the process group
    if is_main_process():
        out = args.out or osp.join(
            cfg.work_dir, f'eval_{time.strftime("%Y%m%d_%H%M%S")}.json')
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        with open(out, 'w') as f:
            json.dump(dict(config=args.config, checkpoint=args.checkpoint,
                           metrics=metrics), f, indent=1)
        print(f'metrics saved to {out}')
        name = args.name or osp.splitext(osp.basename(args.config))[0]
        table = write_summary([(name, metrics)],
                              osp.join(cfg.work_dir, 'summary.md'),
                              osp.join(cfg.work_dir, 'summary.json'))
        print('\n' + table)
        print(f'summary saved to {osp.join(cfg.work_dir, "summary.md")}')
    shutdown_dist()


if __name__ == '__main__':
    main()

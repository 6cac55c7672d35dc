"""Train a face recognizer or a distiller with MMEngine's Runner."""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from mmfacekd.models.distillers.teacher_cache import check_cache_config
from mmfacekd.utils import (
    init_cpu_dist_if_needed,
    register_all_modules,
    register_safe_globals,
    shutdown_dist,
    tune_cpu_malloc,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the latest checkpoint in the work_dir, or from the '
        'given checkpoint path')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: float16 + dynamic loss scale '
                        '(AmpOptimWrapper) on GPU, bfloat16 autocast '
                        '(AutocastOptimWrapper) on CPU')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate with the total '
                        'batch size')
    parser.add_argument('--no-validate', action='store_true',
                        help='skip validation during training')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, e.g. key=value a.b=value')
    parser.add_argument('--launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply command-line arguments to the config."""
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if torch.cuda.is_available():  # float16 with a dynamic loss scaler
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        else:  # CPU: bfloat16 autocast, no scaler needed
            cfg.optim_wrapper.type = 'AutocastOptimWrapper'
            cfg.optim_wrapper.setdefault('dtype', 'bfloat16')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main() -> None:
    args = parse_args()
    register_all_modules(init_default_scope=False)
    register_safe_globals()  # weights_only loads of MMEngine checkpoints
    tune_cpu_malloc()  # CPU only: no mmap/munmap per activation
    cfg = merge_args(Config.fromfile(args.config), args)
    check_cache_config(cfg)  # model.teacher_cache vs the train pipeline
    # gloo on CPU; a dead peer fails collectives after env_cfg.dist_cfg.timeout
    init_cpu_dist_if_needed(cfg.launcher, int(
        cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout', 1800)))
    runner = Runner.from_cfg(cfg)
    runner.train()
    del runner  # DDP's reducer must go before the process group
    shutdown_dist()


if __name__ == '__main__':
    main()

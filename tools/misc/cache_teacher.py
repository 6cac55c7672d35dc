"""Cache a distiller's teacher embeddings of every training record.

Writes ``model.teacher_cache`` (or ``--out``): the frozen teacher's
embedding of each record and of its horizontal flip, memory-mapped, with a
header that pins the teacher checkpoint (SHA-256), the dataset, the
preprocessing and the dtype (see mmfacekd/models/distillers/teacher_cache.py).
Training with ``model.teacher_cache`` set then reads it instead of running
the teacher backbone. Resumable (rerun after an interruption), distributed.

Examples:
    python tools/misc/cache_teacher.py configs/demo/kd_r18_mbf_synth.py \\
        --out work_dirs/teacher_cache/r18_synth.npy
    # 8 GPUs (or N CPU processes with gloo):
    torchrun --nproc_per_node 8 tools/misc/cache_teacher.py CFG \\
        --launcher pytorch
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.dist import init_dist

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from mmfacekd.utils import (  # noqa: E402
    init_cpu_dist_if_needed,
    register_all_modules,
    register_safe_globals,
    tune_cpu_malloc,
)
from mmfacekd.utils.teacher_cache_writer import write_teacher_cache  # noqa


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config', help='FaceDistiller training config')
    p.add_argument('--out', help='the cache .npy (default: the config\'s '
                   'model.teacher_cache)')
    p.add_argument('--dtype', choices=['float16', 'float32'],
                   default='float16')
    p.add_argument('--batch-size', type=int, default=256,
                   help='records per chunk (one forward, one done flag)')
    p.add_argument('--num-workers', type=int, default=2)
    p.add_argument('--no-progress', action='store_true')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                   default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    register_all_modules()
    register_safe_globals()
    tune_cpu_malloc()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.launcher != 'none' and not init_cpu_dist_if_needed(args.launcher):
        init_dist(args.launcher)
    write_teacher_cache(cfg, out=args.out, dtype=args.dtype,
                        batch_size=args.batch_size,
                        num_workers=args.num_workers,
                        progress=not args.no_progress)


if __name__ == '__main__':
    main()

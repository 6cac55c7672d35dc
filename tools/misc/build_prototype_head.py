"""Build a classifier head for a backbone-only teacher from class prototypes.

Runs the teacher over the training set once (no flip; distributed-capable:
each process embeds a shard) and saves a head checkpoint whose class weights
are the L2-normalized mean teacher embeddings per identity. A distiller loads
it with ``teacher_head_ckpt=...`` and reads ``teacher.logits``.

Examples:
    # our distiller config: uses its teacher and teacher_ckpt
    python tools/misc/build_prototype_head.py configs/gkd_r50_mbf.py \\
        --out checkpoints/r50_prototype_head.pth
    # an insightface backbone.pth with a plain recognizer config
    python tools/misc/build_prototype_head.py \\
        configs/arcface/arcface_r50_ms1mv2.py \\
        --checkpoint backbone.pth --revise-keys '^=backbone.' --out head.pth
    # 8 GPUs (or N CPU processes):
    torchrun --nproc_per_node 8 tools/misc/build_prototype_head.py CFG \\
        --out head.pth --launcher pytorch
"""
import argparse
import copy
import os
import time

import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import DefaultSampler, pseudo_collate
from mmengine.dist import get_dist_info, init_dist, is_main_process
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader

from mmfacekd.models.distillers import (
    load_state_dict_strict,
    revise_state_dict,
)
from mmfacekd.registry import DATASETS, MODELS
from mmfacekd.utils import (
    compute_class_prototypes,
    init_cpu_dist_if_needed,
    load_checkpoint_safely,
    register_all_modules,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config', help='distiller config (its teacher is used) or '
                   'a FaceRecognizer config')
    p.add_argument('--checkpoint', help='teacher weights (default: the '
                   "distiller config's teacher_ckpt)")
    p.add_argument('--revise-keys', nargs='*', default=[r'^module\.='],
                   help="regex=replacement pairs for checkpoint keys, e.g. "
                   "'^=backbone.' for an insightface backbone.pth")
    p.add_argument('--out', required=True, help='output head checkpoint')
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--num-workers', type=int, default=2)
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                   default='none')
    return p.parse_args()


def main() -> None:
    args = parse_args()
    register_all_modules()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.launcher != 'none' and not init_cpu_dist_if_needed(args.launcher):
        init_dist(args.launcher)
    model_cfg = copy.deepcopy(cfg.model)
    ckpt = args.checkpoint
    if model_cfg.type == 'FaceDistiller':
        ckpt = ckpt or model_cfg.teacher_ckpt
        preprocessor = model_cfg.get('data_preprocessor')
        model_cfg = model_cfg.teacher
        if preprocessor is not None:
            model_cfg.data_preprocessor = preprocessor
    if ckpt is None:
        raise SystemExit('no teacher checkpoint: pass --checkpoint')
    head_cfg = model_cfg.pop('head', None)
    model_cfg.head = None
    model = MODELS.build(model_cfg)
    revise = [tuple(r.split('=', 1)) for r in args.revise_keys]
    ckpt_obj = load_checkpoint_safely(ckpt)
    state = revise_state_dict(ckpt_obj.get('state_dict', ckpt_obj), revise)
    # a classifier in the checkpoint (if any) is not needed here
    state = {k: v for k, v in state.items() if not k.startswith('head.')}
    load_state_dict_strict(model, state, ckpt)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model.to(device)

    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    test_pipe = cfg.get('test_pipeline') or [
        dict(type='LoadFaceImage'), dict(type='PackFaceInputs')]
    ds_cfg.pipeline = test_pipe
    dataset = DATASETS.build(ds_cfg)
    num_classes = getattr(dataset, 'num_classes', None) or (
        head_cfg or {}).get('num_classes')
    sampler = DefaultSampler(dataset, shuffle=False, round_up=False)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler,
                        num_workers=args.num_workers,
                        collate_fn=pseudo_collate)
    bar = ProgressBar(len(dataset)) if is_main_process() else None
    rank, world = get_dist_info()

    def progress(n: int) -> None:
        if bar is not None:
            for _ in range(n * world):
                bar.update()

    t0 = time.time()
    weight = compute_class_prototypes(model, loader, num_classes, progress)
    if is_main_process():
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        torch.save(dict(state_dict=dict(weight=weight),
                        meta=dict(teacher_ckpt=ckpt, config=args.config,
                                  num_classes=num_classes,
                                  num_images=len(dataset))), args.out)
        print(f'\nprototype head {tuple(weight.shape)} from {len(dataset)} '
              f'images in {time.time() - t0:.1f}s -> {args.out}')


if __name__ == '__main__':
    main()

"""Does CAKD collapse without the decorrelation term, and does the APT
identity anchor change that? (issue 15)

Trains the CAKD demo distiller (``configs/demo/cakd_vit_mbf_synth.py``,
prompted ViT teacher -> MobileFaceNet) for ``--epochs`` epochs in four
variants — the paper's two terms alone, + decorrelation (0.04, the shipped
configs), + identity anchor (``prompted_teacher_cls_weight``), both — with
one seed (the learning rate follows the demo's 4-epoch schedule, stopped
after ``--epochs``), and prints per variant:

* ``pc1_s`` / ``pc1_t``: share of the variance of each branch's MSA outputs
  on their first principal component, mean of the last 20 iterations
  (``1/d`` = 1/64 isotropic, 1 = collapsed onto one direction);
* ``L_feat``: the feature-alignment term, same window;
* the **prompted** teacher's verification accuracy on ``synth_lfw.bin``
  (10-fold) next to the unprompted (pretrained) teacher's: whether APT kept
  the teacher a face recognizer;
* the student's verification accuracy on ``synth_lfw.bin``.

Example (needs the demo ViT teacher, checkpoints/demo/arcface_vit_synth.pth)::

    python tools/analysis/cakd_collapse.py --epochs 1
"""
import argparse
import copy
import json
import os.path as osp
import sys
from typing import Dict, List

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from mmfacekd.datasets.verification_bin import load_verification_bin  # noqa
from mmfacekd.evaluation.metrics.verification import (  # noqa: E402
    verification_accuracy,
)
from mmfacekd.utils import register_all_modules  # noqa: E402
from mmfacekd.utils.cpu_malloc import tune_cpu_malloc  # noqa: E402

CONFIG = 'configs/demo/cakd_vit_mbf_synth.py'
VARIANTS = {
    'paper (attn + feat)': dict(decorrelation=0.0, anchor=0.0),
    '+ decorrelation 0.04': dict(decorrelation=0.04, anchor=0.0),
    '+ identity anchor': dict(decorrelation=0.0, anchor=1.0),
    '+ both': dict(decorrelation=0.04, anchor=1.0),
}


class _Collect(Hook):
    """Keeps every logged CAKD statistic of every iteration."""
    priority = 'LOW'

    def __init__(self) -> None:
        self.rows: List[Dict[str, float]] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.rows.append({k: float(v) for k, v in (outputs or {}).items()
                          if k.startswith(('distill.cakd.', 'teacher.'))})


def _embed(fn, images: np.ndarray, model, batch: int = 128) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch])
            data = model.data_preprocessor(dict(inputs=list(x)),
                                           training=False)
            out.append(torch.nn.functional.normalize(fn(data['inputs'])))
    return torch.cat(out).numpy()


def _pairs(data_root: str):
    import cv2
    bins, issame = load_verification_bin(osp.join(data_root,
                                                  'synth_lfw.bin'))
    imgs = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
            for b in bins]
    imgs = np.stack([im[:, :, ::-1].transpose(2, 0, 1) for im in imgs])
    return np.ascontiguousarray(imgs), np.asarray(issame)


def _accuracy(emb: np.ndarray, issame: np.ndarray) -> float:
    folds, _ = verification_accuracy(emb[0::2], emb[1::2], issame)
    return 100 * float(np.mean(folds))


def run_variant(name: str, spec: dict, args, pairs) -> Dict[str, float]:
    cfg = Config.fromfile(osp.join(ROOT, CONFIG))
    cfg.work_dir = osp.join(args.work_root, name.strip('+ ').replace(
        ' ', '_').replace('(', '').replace(')', ''))
    cfg.train_cfg.max_epochs = args.epochs
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1)
    cfg.randomness = dict(seed=args.seed)
    cfg.model.distill_losses.cakd.decorrelation = spec['decorrelation']
    cfg.model.prompted_teacher_cls_weight = spec['anchor']
    runner = Runner.from_cfg(cfg)
    collect = _Collect()
    runner.register_hook(collect)
    runner.train()
    model = runner.model.eval()
    tail = collect.rows[-20:]
    res = {k: float(np.mean([r[k] for r in tail if k in r]))
           for k in ('distill.cakd.pc1_s', 'distill.cakd.pc1_t',
                     'distill.cakd.feat')}
    imgs, issame = pairs
    res['prompted_teacher_acc'] = _accuracy(
        _embed(model.teacher.extract_feat, imgs, model), issame)
    with model.teacher.backbone.without_prompts():
        res['teacher_acc'] = _accuracy(
            _embed(model.teacher.extract_feat, imgs, model), issame)
    res['student_acc'] = _accuracy(
        _embed(model.student.extract_feat, imgs, model), issame)
    res['iters'] = len(collect.rows)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                        choices=list(VARIANTS))
    parser.add_argument('--data-root', default=osp.join(ROOT, 'data',
                                                        'synthetic'))
    parser.add_argument('--work-root', default=osp.join(
        ROOT, 'work_dirs', 'cakd_collapse'))
    parser.add_argument('--out', help='also write the rows as JSON here')
    args = parser.parse_args()
    tune_cpu_malloc()
    register_all_modules(init_default_scope=True)
    pairs = _pairs(args.data_root)
    rows = {}
    for name in args.variants:
        rows[name] = run_variant(name, copy.deepcopy(VARIANTS[name]), args,
                                 pairs)
        print(name, json.dumps(rows[name]), flush=True)
    print(f'\n{args.epochs} epoch(s), seed {args.seed}; pc1 = share of the '
          'first principal component of the MSA outputs (1/64 isotropic, 1 '
          'collapsed), last 20 iterations; accuracies: synth_lfw 10-fold\n')
    print('| variant | pc1 student | pc1 teacher | L_feat | prompted '
          'teacher acc | teacher acc (no prompts) | student acc |')
    print('|---|---|---|---|---|---|---|')
    for name, r in rows.items():
        print(f"| {name} | {r['distill.cakd.pc1_s']:.3f} | "
              f"{r['distill.cakd.pc1_t']:.3f} | {r['distill.cakd.feat']:.3f}"
              f" | {r['prompted_teacher_acc']:.2f} | {r['teacher_acc']:.2f} "
              f"| {r['student_acc']:.2f} |")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(epochs=args.epochs, seed=args.seed, rows=rows), f,
                      indent=1)


if __name__ == '__main__':
    main()

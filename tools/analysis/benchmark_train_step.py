"""Cost of a training step: student only, KD, GKD live, GKD from the cache.

For each GKD distiller CONFIG, four models train on the same batches of a
temporary RecordIO set (random faces at the config's input size, written
and read in the real format, labels over the config's classes):

  (a) the student alone (its FaceRecognizer, same data preprocessor);
  (b) KD (configs/_base_/losses/kd.py) with the live teacher;
  (c) the config's GKD with the live teacher;
  (d) the same GKD reading the teacher from a teacher-embedding cache
      (written by the real tools/misc/cache_teacher.py code for the set).

Teacher weights are random (saved once so the cache can pin them); the cost
does not depend on them. Each variant runs in its own process: images/s
over ``--steps`` optimizer steps after ``--warmup``, and peak memory (CUDA:
``max_memory_allocated``; CPU: the process's peak RSS), printed with
ratios to (a). Goals from the issue: (d)/(a) <= 1.05, (c)/(b) <= 1.03 in
step time (GKD paper, Table 6: 1.38 and 1.04 on a V100).

    python tools/analysis/benchmark_train_step.py \
        configs/demo/gkd_r18_mbf_synth.py configs/gkd/gkd_r50_mbf.py \
        --batch 16 --steps 5
"""
import argparse
import copy
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

VARIANTS = ('a', 'b', 'c', 'd')
NAMES = {'a': '(a) student only', 'b': '(b) KD, live teacher',
         'c': '(c) GKD, live teacher', 'd': '(d) GKD, teacher cache'}


def _register():
    from mmfacekd.utils import (
        register_all_modules,
        register_safe_globals,
        tune_cpu_malloc,
    )
    register_all_modules()
    register_safe_globals()
    tune_cpu_malloc()


def _load(config: str, data_root: str, teacher_ckpt: str, batch: int):
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.model.teacher_ckpt = teacher_ckpt
    ds = cfg.train_dataloader.dataset
    ds.data_root = data_root
    ds.pop('num_classes', None)
    cfg.train_dataloader.batch_size = batch
    return cfg


def _input_size(cfg) -> int:
    load = [t for t in cfg.train_dataloader.dataset.pipeline
            if t['type'] == 'LoadFaceImage']
    size = load[0].get('expected_size') if load else None
    return int(size[0]) if size else 112


def prepare(config: str, work: str, num_images: int, batch: int) -> dict:
    """Write the RecordIO set, the random teacher and its cache."""
    import cv2
    import numpy as np
    import torch
    from mmengine.config import Config

    from mmfacekd.datasets.recordio import (
        IndexedRecordWriter,
        IRHeader,
        pack_record,
    )
    from mmfacekd.registry import MODELS
    from mmfacekd.utils.teacher_cache_writer import write_teacher_cache
    base = Config.fromfile(config)
    num_classes = int(base.model.student.head.num_classes)
    size = _input_size(base)
    data_root = osp.join(work, 'data')
    os.makedirs(data_root, exist_ok=True)
    rng = np.random.default_rng(0)
    with IndexedRecordWriter(osp.join(data_root, 'train.idx'),
                             osp.join(data_root, 'train.rec')) as w:
        for i in range(num_images):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            ok, buf = cv2.imencode('.jpg', img)
            label = float(rng.integers(0, num_classes))
            w.write(i, pack_record(IRHeader(0, label, i, 0), buf.tobytes()))
    with open(osp.join(data_root, 'property'), 'w') as f:
        f.write(f'{num_classes},{size},{size}\n')
    torch.manual_seed(0)
    teacher = MODELS.build(base.model.teacher)
    teacher_ckpt = osp.join(work, 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), teacher_ckpt)
    del teacher
    cfg = _load(config, data_root, teacher_ckpt, batch)
    cache = osp.join(work, 'teacher_cache.npy')
    write_teacher_cache(cfg, out=cache, batch_size=batch, num_workers=0,
                        progress=False)
    return dict(data_root=data_root, teacher_ckpt=teacher_ckpt, cache=cache)


def measure(config: str, variant: str, prep: dict, batch: int, steps: int,
            warmup: int) -> dict:
    """Images/s and peak memory of one variant, in this process."""
    import torch
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate

    from mmfacekd.registry import DATASETS, MODELS, OPTIM_WRAPPERS
    cfg = _load(config, prep['data_root'], prep['teacher_ckpt'], batch)
    model_cfg = copy.deepcopy(cfg.model)
    if variant == 'a':
        model_cfg = dict(model_cfg.student,
                         data_preprocessor=model_cfg.get('data_preprocessor'))
    elif variant == 'b':
        kd = Config.fromfile(osp.join(ROOT, 'configs/_base_/losses/kd.py'))
        model_cfg.distill_losses = dict(kd=kd.kd_loss)
    elif variant == 'd':
        model_cfg.teacher_cache = prep['cache']
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    torch.manual_seed(0)
    model = MODELS.build(model_cfg).to(device)
    model.train()
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batches = [pseudo_collate([dataset[(i * batch + j) % len(dataset)]
                               for j in range(batch)])
               for i in range(warmup + steps)]
    wrapper = OPTIM_WRAPPERS.build(dict(
        type='OptimWrapper', optimizer=torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad], lr=1e-3,
            momentum=0.9)))
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    for i, data in enumerate(batches):
        if i == warmup:
            if device == 'cuda':
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        model.train_step(data, wrapper)
    if device == 'cuda':
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = time.perf_counter() - t0
    return dict(images_per_s=steps * batch / seconds,
                step_ms=seconds / steps * 1e3, peak_mb=peak, device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='*', help='GKD distiller configs')
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    _register()
    if args.child:
        config, variant, prep = args.child
        print(json.dumps(measure(config, variant, json.loads(prep),
                                 args.batch, args.steps, args.warmup)))
        return
    for config in args.configs:
        with tempfile.TemporaryDirectory() as work:
            n = args.batch * (args.steps + args.warmup)
            prep = prepare(config, work, n, args.batch)
            res = {}
            for v in VARIANTS:
                out = subprocess.run(
                    [sys.executable, __file__, '--child', config, v,
                     json.dumps(prep), '--batch', str(args.batch),
                     '--steps', str(args.steps), '--warmup',
                     str(args.warmup)],
                    cwd=ROOT, check=True, capture_output=True, text=True)
                res[v] = json.loads(out.stdout.strip().splitlines()[-1])
        a = res['a']
        print(f'\n{config} — batch {args.batch}, {args.steps} steps after '
              f'{args.warmup}, {a["device"]}\n'
              '| variant | images/s | step ms | step / (a) | peak MB | '
              'peak / (a) |\n|---|---|---|---|---|---|')
        for v in VARIANTS:
            r = res[v]
            print(f'| {NAMES[v]} | {r["images_per_s"]:.1f} | '
                  f'{r["step_ms"]:.0f} | {r["step_ms"] / a["step_ms"]:.2f} | '
                  f'{r["peak_mb"]:.0f} | {r["peak_mb"] / a["peak_mb"]:.2f} |')
        cb = res['c']['step_ms'] / res['b']['step_ms']
        da = res['d']['step_ms'] / a['step_ms']
        print(f'(c)/(b) step time: {cb:.2f} (goal <= 1.03); '
              f'(d)/(a): {da:.2f} (goal <= 1.05)', flush=True)


if __name__ == '__main__':
    main()

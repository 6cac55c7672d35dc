"""CPU cost of a training step and of a test batch, four ways.

For each config: glibc malloc as it comes vs tuned
(``mmfacekd.utils.tune_cpu_malloc``, what tools/train.py and tools/test.py
do on CPU) × NCHW vs NHWC (``FaceDataPreprocessor(channels_last=True)``).
Each variant runs in its own process (malloc settings are per process) on
the same random batch; printed: ms per training step (forward, backward,
SGD step of the whole model, distillers included), ms per test batch
(``predict`` with the config's flip, timed first as in a fresh
tools/test.py process) and both as ratios to the untuned NCHW
run::

    python tools/analysis/benchmark_cpu_step.py \
        configs/demo/arcface_mbf_synth.py configs/demo/gkd_r18_mbf_synth.py
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)


def measure(config: str, channels_last: bool, batch: int, test_batch: int,
            steps: int, warmup: int) -> dict:
    """ms per train step and per test batch of ``config`` in this process."""
    import torch
    from mmengine.config import Config
    from mmpretrain.structures import DataSample

    from mmfacekd.registry import MODELS
    from mmfacekd.utils import register_all_modules, tune_cpu_malloc
    register_all_modules()
    tune_cpu_malloc()  # a no-op when MMFACEKD_CPU_MALLOC=0
    torch.manual_seed(0)
    cfg = Config.fromfile(config)
    cfg.model.setdefault('data_preprocessor', {})
    cfg.model.data_preprocessor['channels_last'] = channels_last
    cfg.model.pop('teacher_ckpt', None)  # random weights time the same
    model = MODELS.build(cfg.model)
    num_classes = _num_classes(cfg)
    size = 112

    def batch_of(n):
        inputs = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
                  for _ in range(n)]
        samples = [DataSample().set_gt_label(i % num_classes)
                   for i in range(n)]
        return dict(inputs=inputs, data_samples=samples)

    # the test batches first, in a fresh process as in tools/test.py
    model.eval()
    data = batch_of(test_batch)
    with torch.no_grad():
        for i in range(warmup + steps):
            if i == warmup:
                t0 = time.perf_counter()
            model.test_step(data)
    test_ms = (time.perf_counter() - t0) / steps * 1e3
    optim = torch.optim.SGD([p for p in model.parameters()
                             if p.requires_grad], lr=1e-3, momentum=0.9)
    data = batch_of(batch)
    model.train()
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        d = model.data_preprocessor(data, True)
        losses = model(**d, mode='loss')
        loss = sum(v for k, v in losses.items() if 'loss' in k)
        optim.zero_grad()
        loss.backward()
        optim.step()
    train_ms = (time.perf_counter() - t0) / steps * 1e3
    return dict(train_ms=train_ms, test_ms=test_ms)


def _num_classes(cfg) -> int:
    model = cfg.model
    net = model.get('student', model)
    return int(net['head']['num_classes'])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='*')
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--test-batch', type=int, default=128)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--child', nargs=2, metavar=('CONFIG', 'NHWC'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1] == '1',
                                 args.batch, args.test_batch, args.steps,
                                 args.warmup)))
        return
    variants = [('malloc as is, NCHW', '0', '0'),
                ('malloc tuned, NCHW', '1', '0'),
                ('malloc as is, NHWC', '0', '1'),
                ('malloc tuned, NHWC', '1', '1')]
    print(f'batch {args.batch} (train), {args.test_batch} (test), '
          f'{args.steps} timed steps after {args.warmup}; torch threads: '
          'default')
    for config in args.configs:
        print(f'\n{config}\n| variant | train ms/step | x | test ms/batch '
              '| x |\n|---|---|---|---|---|')
        base = None
        for name, malloc, nhwc in variants:
            out = subprocess.run(
                [sys.executable, __file__, '--child', config, nhwc,
                 '--batch', str(args.batch), '--test-batch',
                 str(args.test_batch), '--steps', str(args.steps),
                 '--warmup', str(args.warmup)],
                cwd=ROOT, check=True, capture_output=True, text=True,
                env=dict(os.environ, MMFACEKD_CPU_MALLOC=malloc))
            r = json.loads(out.stdout.strip().splitlines()[-1])
            base = base or r
            print(f"| {name} | {r['train_ms']:.0f} | "
                  f"{base['train_ms'] / r['train_ms']:.2f} | "
                  f"{r['test_ms']:.0f} | "
                  f"{base['test_ms'] / r['test_ms']:.2f} |", flush=True)


if __name__ == '__main__':
    main()

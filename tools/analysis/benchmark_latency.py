"""CPU latency of a config's embedding network: PyTorch eager vs
onnxruntime, batch 1 and batch 32, same thread count for both.

Exports the graph (``mmfacekd.deployment.export_and_check``, parity checked
on a few synthetic crops), then times ``--repeats`` runs of each engine per
batch size after ``--warmup`` runs and prints the median, the p90 and the
ratio PyTorch / onnxruntime (> 1: onnxruntime is faster). Inputs are
prepared float32 batches, so decoding and normalization are not timed.

Example:
    python tools/analysis/benchmark_latency.py \\
        configs/arcface/arcface_mbf_ms1mv2.py \\
        configs/arcface/arcface_r50_ms1mv2.py --threads 2
"""
import argparse
import os.path as osp
import sys
import tempfile
import time
from typing import Callable, List

import numpy as np
import torch


def timed(fn: Callable[[], object], warmup: int, repeats: int
          ) -> List[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('configs', nargs='+')
    p.add_argument('--checkpoint', nargs='*', default=None,
                   help='one checkpoint per config (default: random '
                   'weights; latency does not depend on them)')
    p.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 32])
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--repeats', type=int, default=20)
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    args = p.parse_args(argv)
    from mmfacekd.deployment import (
        OnnxEmbedder,
        build_export_graph,
        check_parity,
        export_onnx,
        load_face_images,
    )
    from mmfacekd.utils import register_all_modules
    register_all_modules()
    torch.set_num_threads(args.threads)
    ckpts = args.checkpoint or [None] * len(args.configs)
    crops = load_face_images('data/synthetic/synth_lfw.bin', 8)
    tmp = tempfile.mkdtemp(prefix='mmfacekd_latency_')
    print(f'threads: {args.threads} (torch intra-op = onnxruntime '
          f'intra-op), {args.repeats} timed runs after {args.warmup} '
          f'warm-up runs; median [p90] ms per batch')
    print('| config | batch | PyTorch (ms) | onnxruntime (ms) | '
          'PyTorch / onnxruntime |')
    print('|---|---|---|---|---|')
    for cfg, ckpt in zip(args.configs, ckpts):
        out = osp.join(tmp, osp.basename(cfg) + '.onnx')
        graph, recognizer = build_export_graph(cfg, ckpt, args.shape)
        export_onnx(graph, out)
        if graph.spec.size == tuple(crops.shape[1:3]):
            check_parity(recognizer, out, crops)
        ort = OnnxEmbedder(out, threads=args.threads)
        for bs in args.batch_sizes:
            x = np.random.default_rng(0).standard_normal(
                (bs, 3, *graph.spec.size)).astype(np.float32)
            xt = torch.from_numpy(x)

            def run_torch():
                with torch.no_grad():
                    graph(xt)

            t_pt = np.asarray(timed(run_torch, args.warmup, args.repeats))
            t_ort = np.asarray(timed(lambda: ort.run(x), args.warmup,
                                     args.repeats))
            med_pt, med_ort = np.median(t_pt) * 1e3, np.median(t_ort) * 1e3
            print(f'| {osp.basename(cfg)} | {bs} | {med_pt:.2f} '
                  f'[{np.percentile(t_pt, 90) * 1e3:.2f}] | {med_ort:.2f} '
                  f'[{np.percentile(t_ort, 90) * 1e3:.2f}] | '
                  f'{med_pt / med_ort:.2f} |', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

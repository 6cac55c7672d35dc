"""Verification accuracy of a float32 ONNX embedding graph vs its dynamic
int8, static int8 and float16 versions on the synthetic pair sets.

Quantizes the graph (``mmfacekd.deployment.quantize``; static calibration on
``--calib-images`` random training crops), embeds every image of each
``.bin`` set with its flip (the verification protocol of ``tools/test.py``),
and scores the 10-fold LFW protocol with the project's functions
(``mmfacekd.evaluation.functional.bootstrap``: fold accuracies, and paired
bootstrap replicates for the 95 % interval of each delta). Prints a markdown
table: accuracy per set, delta to float32 [95 % CI], file size.

Example (docs/deployment.md):
    python tools/deployment/pytorch2onnx.py \\
        configs/demo/arcface_mbf_synth.py \\
        work_dirs/deploy/arcface_mbf_synth/epoch_4.pth \\
        --out work_dirs/deploy/mbf.onnx
    python tools/analysis/benchmark_quantization.py work_dirs/deploy/mbf.onnx
"""
import argparse
import os
import sys
import time
from typing import Dict

import numpy as np

SETS = ['data/synthetic/synth_lfw.bin', 'data/synthetic/synth_cfp.bin',
        'data/synthetic/synth_agedb.bin']


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('model', help='float32 .onnx from pytorch2onnx.py')
    p.add_argument('--modes', nargs='+', default=['dynamic', 'static',
                                                  'fp16'],
                   choices=['dynamic', 'static', 'fp16'])
    p.add_argument('--sets', nargs='+', default=SETS)
    p.add_argument('--calib-images', type=int, default=256)
    p.add_argument('--calib-source', default='data/synthetic')
    p.add_argument('--out-dir', help='quantized files (default: next to '
                   'the model)')
    p.add_argument('--n-boot', type=int, default=1000)
    p.add_argument('--threads', type=int, default=None)
    return p.parse_args(argv)


def squared_distances(emb: np.ndarray) -> np.ndarray:
    """``‖e1 − e2‖²`` of L2-normalized embeddings of pairs (2i, 2i+1)."""
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    return np.sum(np.square(e[0::2] - e[1::2]), 1)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmfacekd.deployment import (
        OnnxEmbedder,
        load_face_images,
        load_pair_set,
        quantize,
        quantized_path,
    )
    from mmfacekd.evaluation.functional.bootstrap import (
        paired_ci,
        verification_fold_accuracies,
        verification_replicates,
    )
    from mmfacekd.utils import register_all_modules
    register_all_modules()

    models: Dict[str, str] = {'fp32': args.model}
    calib = (load_face_images(args.calib_source, args.calib_images, seed=0)
             if 'static' in args.modes else None)
    for mode in args.modes:
        models[mode] = quantize(args.model, quantized_path(
            args.model, mode, args.out_dir), mode, calib)
    sets = [load_pair_set(s) for s in args.sets]
    acc: Dict[str, Dict[str, float]] = {m: {} for m in models}
    reps: Dict[str, Dict[str, np.ndarray]] = {m: {} for m in models}
    for mode, path in models.items():
        embedder = OnnxEmbedder(path, threads=args.threads)
        t0 = time.time()
        for name, images, issame in sets:
            dist = squared_distances(embedder.embed(images, flip=True))
            acc[mode][name] = 100 * float(
                verification_fold_accuracies(dist, issame).mean())
            reps[mode][name] = 100 * verification_replicates(
                dist, issame, args.n_boot, seed=0, name=name)
        print(f'{mode}: embedded {sum(len(s[1]) for s in sets)} crops (+ '
              f'flips) in {time.time() - t0:.1f}s', file=sys.stderr)
    names = [s[0] for s in sets]
    print('| model | size (MiB) | ' + ' | '.join(names) + ' | mean |')
    print('|---|---|' + '---|' * (len(names) + 1))
    size0 = os.path.getsize(args.model)
    for mode, path in models.items():
        size = os.path.getsize(path)
        cells = []
        for name in names + ['mean']:
            if name == 'mean':
                a = np.mean([acc[mode][n] for n in names])
                r = np.mean([reps[mode][n] for n in names], axis=0)
                r0 = np.mean([reps['fp32'][n] for n in names], axis=0)
                a0 = np.mean([acc['fp32'][n] for n in names])
            else:
                a, r = acc[mode][name], reps[mode][name]
                a0, r0 = acc['fp32'][name], reps['fp32'][name]
            if mode == 'fp32':
                cells.append(f'{a:.2f}')
            else:
                _, lo, hi = paired_ci(r, r0)
                cells.append(f'{a:.2f} (Δ {a - a0:+.2f} [{lo:+.2f}, '
                             f'{hi:+.2f}])')
        print(f'| {mode} | {size / 2**20:.2f} ({size / size0:.2f}x) | '
              + ' | '.join(cells) + ' |')
    return 0


if __name__ == '__main__':
    sys.exit(main())

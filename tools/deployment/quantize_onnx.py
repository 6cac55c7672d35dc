"""Quantize an exported embedding graph: onnxruntime dynamic int8, static
int8 (calibrated on training crops) and float16.

Writes ``<stem>_<mode>.onnx`` next to the input (or into ``--out-dir``) and
prints each file's size and the minimum cosine of its embeddings to the
float32 graph on ``--check-images`` validation crops. The input must come
from ``tools/deployment/pytorch2onnx.py`` (its ``mmfacekd.*`` metadata say
how to feed it). Accuracy: ``tools/analysis/benchmark_quantization.py``.

Example:
    python tools/deployment/quantize_onnx.py work_dirs/onnx/mbf.onnx \\
        --modes dynamic static fp16 --calib-images 256
"""
import argparse
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('model', help='float32 .onnx from pytorch2onnx.py')
    p.add_argument('--modes', nargs='+', default=['dynamic', 'static',
                                                  'fp16'],
                   choices=['dynamic', 'static', 'fp16'])
    p.add_argument('--out-dir', help='default: next to the model')
    p.add_argument('--calib-images', type=int, default=256,
                   help='training crops for static calibration')
    p.add_argument('--calib-source', default='data/synthetic',
                   help='RecordIO folder (train.rec/train.idx) or a .bin')
    p.add_argument('--check-images', type=int, default=64)
    p.add_argument('--check-source', default='data/synthetic/synth_lfw.bin')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the random calibration subset')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmfacekd.deployment import (
        InputSpecError,
        OnnxEmbedder,
        cosine_rows,
        load_face_images,
        quantize,
        quantized_path,
    )
    from mmfacekd.utils import register_all_modules
    register_all_modules()
    try:
        ref_model = OnnxEmbedder(args.model)
        calib = (load_face_images(args.calib_source, args.calib_images,
                                  seed=args.seed)
                 if 'static' in args.modes else None)
        check = load_face_images(args.check_source, args.check_images)
    except (InputSpecError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    ref = ref_model.embed(check)
    size0 = os.path.getsize(args.model)
    print(f'{args.model}: {size0 / 2**20:.2f} MiB float32')
    for mode in args.modes:
        dst = quantize(args.model, quantized_path(args.model, mode,
                                                  args.out_dir),
                       mode, calib)
        cos = cosine_rows(ref, OnnxEmbedder(dst).embed(check))
        size = os.path.getsize(dst)
        print(f'{dst}: {size / 2**20:.2f} MiB ({size / size0:.2f}x), '
              f'cosine to float32 on {len(check)} crops: min {cos.min():.4f}'
              f' mean {cos.mean():.4f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

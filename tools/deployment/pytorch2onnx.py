"""Export the embedding network of a recognizer or distiller checkpoint to
ONNX and check it against PyTorch with onnxruntime on real face crops.

The graph is backbone + neck (what ``mode='tensor'`` / predict embed with),
batch axis dynamic, input float32 NCHW RGB crops of the pipeline size
(112x112); normalization ``(x - mean) / std`` is the caller's unless
``--bake-normalization`` puts it into the graph (input then 0..255).
For a FaceDistiller config the student is exported. The input contract and
opset are written to the file's ``metadata_props`` (``mmfacekd.*``).
Exits non-zero when the minimum cosine to PyTorch is below 0.9999.

Examples:
    python tools/deployment/pytorch2onnx.py \\
        configs/arcface/arcface_mbf_ms1mv2.py checkpoints/gkd_mbf.pth \\
        --out work_dirs/onnx/gkd_mbf.onnx
    python tools/deployment/pytorch2onnx.py \\
        configs/demo/gkd_r18_mbf_synth.py \\
        work_dirs/demo/gkd_r18_mbf_synth/epoch_4.pth --bake-normalization
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction


def parse_args(argv=None) -> argparse.Namespace:
    from mmfacekd.deployment import DEFAULT_OPSET
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config', help='recognizer or FaceDistiller config')
    p.add_argument('checkpoint', nargs='?', default=None,
                   help='recognizer / distiller checkpoint (omit only to '
                   'export random weights for a smoke test)')
    p.add_argument('--out', help='output .onnx (default: next to the '
                   'checkpoint, same stem)')
    p.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                   help='crop size (default: the test pipeline\'s '
                   'LoadFaceImage expected_size, or the backbone\'s size)')
    p.add_argument('--bake-normalization', action='store_true',
                   help='the graph takes 0..255 RGB and normalizes itself')
    p.add_argument('--check-images', type=int, default=64,
                   help='real crops compared with PyTorch (0: no check)')
    p.add_argument('--images', default='data/synthetic/synth_lfw.bin',
                   help='a .bin pair set or a RecordIO folder to take the '
                   'check images from')
    p.add_argument('--min-cosine', type=float, default=0.9999)
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmfacekd.deployment import (
        CheckpointMismatchError,
        InputSpecError,
        OpsetError,
        ParityError,
        export_and_check,
        load_face_images,
    )
    from mmfacekd.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    out = args.out
    if out is None:
        stem = osp.splitext(args.checkpoint or osp.join(
            'work_dirs', osp.basename(args.config)))[0]
        out = stem + ('_baked' if args.bake_normalization else '') + '.onnx'
    try:
        images = ((lambda: load_face_images(args.images, args.check_images))
                  if args.check_images > 0 else None)
        spec, report = export_and_check(
            cfg, args.checkpoint, out, images, args.opset, args.shape,
            args.bake_normalization, args.min_cosine)
    except (CheckpointMismatchError, InputSpecError, OpsetError,
            ParityError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'wrote {out} (opset {spec.opset}, {spec.embedding_dim}-d '
          f'embedding)\n  {spec.describe()}')
    if report is not None:
        print(f'  onnxruntime vs PyTorch on {args.images}: {report}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

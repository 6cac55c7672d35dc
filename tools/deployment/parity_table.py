"""Export several configs and print the onnxruntime-vs-PyTorch parity table
of docs/deployment.md (max abs diff, min cosine on real crops).

Each entry is ``CONFIG`` or ``CONFIG=CHECKPOINT``. Without a checkpoint the
weights are random with BatchNorm statistics re-estimated on
``--calib-images`` training crops (``recalibrate_batchnorm``), so the
activations have a trained network's scale. Exits non-zero if any entry is
below ``--min-cosine``.

Example:
    python tools/deployment/parity_table.py \\
        configs/demo/arcface_mbf_synth.py=work_dirs/deploy/mbf_epoch_4.pth \\
        configs/arcface/arcface_r50_ms1mv2.py configs/demo/arcface_vit_synth.py
"""
import argparse
import os.path as osp
import sys
import tempfile


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('entries', nargs='+', help='CONFIG or CONFIG=CHECKPOINT')
    p.add_argument('--images', default='data/synthetic/synth_lfw.bin')
    p.add_argument('--num-images', type=int, default=256)
    p.add_argument('--calib-source', default='data/synthetic')
    p.add_argument('--calib-images', type=int, default=256)
    p.add_argument('--shape', type=int, nargs=2, default=None)
    p.add_argument('--opset', type=int, default=None)
    p.add_argument('--bake-normalization', action='store_true')
    p.add_argument('--min-cosine', type=float, default=0.9999)
    p.add_argument('--out-dir', default=None)
    args = p.parse_args(argv)
    from mmfacekd.deployment import (
        DEFAULT_OPSET,
        ParityError,
        build_export_graph,
        check_parity,
        export_onnx,
        load_face_images,
        recalibrate_batchnorm,
    )
    from mmfacekd.utils import register_all_modules
    register_all_modules()
    crops = load_face_images(args.images, args.num_images)
    calib = None
    out_dir = args.out_dir or tempfile.mkdtemp(prefix='mmfacekd_parity_')
    print(f'onnxruntime vs PyTorch on {len(crops)} crops of {args.images}; '
          f'opset {args.opset or DEFAULT_OPSET}')
    print('| config | weights | params (M) | max abs diff | largest abs '
          'entry | min cosine |')
    print('|---|---|---|---|---|---|')
    failed = 0
    for entry in args.entries:
        config, _, ckpt = entry.partition('=')
        graph, recognizer = build_export_graph(
            config, ckpt or None, args.shape, args.bake_normalization)
        if not ckpt:
            if calib is None:
                calib = load_face_images(args.calib_source,
                                         args.calib_images, seed=0)
            recalibrate_batchnorm(recognizer, calib)
        out = osp.join(out_dir, osp.splitext(osp.basename(config))[0] +
                       '.onnx')
        export_onnx(graph, out, args.opset or DEFAULT_OPSET)
        try:
            r = check_parity(recognizer, out, crops, args.min_cosine)
        except ParityError as err:
            print(f'error: {err}', file=sys.stderr)
            failed += 1
            continue
        n = sum(p.numel() for p in graph.parameters()) / 1e6
        weights = osp.basename(ckpt) if ckpt else 'random, BN re-estimated'
        print(f'| {osp.basename(config)} | {weights} | {n:.2f} | '
              f'{r.max_abs_diff:.2e} | {r.max_abs_ref:.3g} | '
              f'{r.min_cosine:.7f} |', flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

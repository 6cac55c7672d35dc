"""Parameters and FLOPs of a config's embedding network (backbone + neck),
counted by MMEngine's ``get_model_complexity_info``.

FLOPs here are multiply-accumulates (MMEngine's and ptflops' convention,
the one of insightface's published "GFLOPs"; docs/deployment.md). For a
FaceDistiller config the student is counted. The size is the one the
network runs at (``data_preprocessor.resize_to`` of the CPU demo configs,
otherwise ``--shape`` or the crop size of the config).

Examples:
    python tools/analysis/get_flops.py configs/arcface/arcface_r50_ms1mv2.py
    python tools/analysis/get_flops.py \\
        configs/arcface/arcface_mbv3l_ms1mv2.py --shape 112 112
"""
import argparse
import sys

from mmengine.config import DictAction


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    p.add_argument('--table', action='store_true',
                   help='print the per-module table')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = p.parse_args(argv)
    from mmengine.config import Config

    from mmfacekd.deployment import InputSpecError
    from mmfacekd.deployment.complexity import model_complexity
    from mmfacekd.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:
        info = model_complexity(cfg, args.shape)
    except InputSpecError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    if args.table:
        print(info['table'])
    h, w = info['input_size']
    print(f'{args.config}: input 3x{h}x{w}, params {info["params"] / 1e6:.3f}'
          f' M, FLOPs (multiply-accumulates) {info["flops"] / 1e9:.3f} G')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Convert an insightface arcface_torch ``backbone.pth`` (+ its Partial FC
shards ``softmax_fc_gpu_*.pt``) into an mmfacekd checkpoint.

The backbone is loaded strictly into the config's recognizer (IResNet or
MobileFaceNet names are insightface's), so a wrong architecture fails here
naming the differing keys. With shards, their class centres (one slice per
rank, concatenated in rank order) become ``head.weight``. The result loads
with ``weights_only=True`` and is usable as

* a teacher: ``model.teacher_ckpt='<out>'`` (keys ``backbone.*`` and, with
  shards, ``head.weight``; without shards set ``teacher.head=None`` or
  ``teacher_head_ckpt`` from tools/misc/build_prototype_head.py);
* a student init: ``load_from='<out>'`` of a recognizer config, or
  ``--prefix student.`` for a distiller config's ``load_from``.

insightface trained with ``(x - 127.5) / 127.5``: set
``model.data_preprocessor.std=127.5`` for these weights.

Examples:
    python tools/misc/convert_insightface.py \\
        configs/arcface/arcface_r50_ms1mv2.py r50/backbone.pth \\
        --out checkpoints/insightface_r50.pth
    python tools/misc/convert_insightface.py configs/gkd/gkd_r50_mbf.py \\
        work/backbone.pth --role teacher \\
        --fc-shards 'work/softmax_fc_gpu_*.pt' \\
        --out checkpoints/r50_teacher.pth
"""
import argparse
import glob
import sys

from mmengine.config import DictAction


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config', help='recognizer config, or a FaceDistiller '
                   'config with --role')
    p.add_argument('backbone', help='insightface backbone.pth (or '
                   'checkpoint_gpu_0.pt)')
    p.add_argument('--out', required=True)
    p.add_argument('--fc-shards', nargs='*', default=[],
                   help='softmax_fc_gpu_<rank>.pt files or a glob')
    p.add_argument('--keep-order', action='store_true',
                   help='use the shards in the given order instead of '
                   'sorting by the rank in their names')
    p.add_argument('--role', choices=['teacher', 'student'],
                   default='teacher',
                   help='which network of a FaceDistiller config')
    p.add_argument('--prefix', default='',
                   help="key prefix, e.g. 'student.' for a distiller's "
                   'load_from')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help="e.g. model.head.num_classes=93431 to fit the shards")
    args = p.parse_args(argv)
    from mmengine.config import Config

    from mmfacekd.deployment import (
        CheckpointMismatchError,
        ConversionError,
        convert_insightface,
        recognizer_config,
        save_converted,
    )
    from mmfacekd.registry import MODELS
    from mmfacekd.utils import register_all_modules
    register_all_modules()
    shards = [f for pat in args.fc_shards for f in (sorted(glob.glob(pat))
                                                    or [pat])]
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model_cfg, _ = recognizer_config(cfg, args.role, keep_head=bool(shards))
    recognizer = MODELS.build(model_cfg)
    try:
        state = convert_insightface(recognizer, args.backbone, shards,
                                    args.config, args.keep_order)
    except (CheckpointMismatchError, ConversionError,
            FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    meta = dict(converted_from=args.backbone, fc_shards=list(shards),
                config=args.config)
    if 'head.weight' in state:
        meta['num_classes'] = int(state['head.weight'].shape[0])
    save_converted(state, args.out, args.prefix, meta)
    head = (f', head {tuple(state["head.weight"].shape)} from '
            f'{len(shards)} shards' if 'head.weight' in state else '')
    print(f'wrote {args.out}: {len(state)} tensors{head}. insightface '
          'normalizes with std 127.5: set model.data_preprocessor.std=127.5.')
    return 0


if __name__ == '__main__':
    sys.exit(main())

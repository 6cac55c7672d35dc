"""Generate the embedded synthetic face set in insightface's on-disk formats.

Writes ``<out>/train.rec``, ``train.idx``, ``property`` (RecordIO, insightface
record-0 convention) and one ``<name>.bin`` per verification set (3,000
pairs each by default: 10 folds of 300, half genuine in every fold).
``--identification`` also writes a 1:N identification set (probe
identities + distractors, MegaFace-style layout; by default ~500 probes x
2,000 distractors = ~1M impostor pairs, report TPR@FPR=1e-4) under
``<out>/identification`` (``--identification-only``: that set alone);
``--ijb`` an IJB-style template bundle under ``<out>/ijb`` (``--ijb-only``;
by default ~675 templates, ~1,300 genuine and ~226k impostor template
pairs). The output is a pure function of the arguments (``--seed``), not of
``--workers``.

Example:
    python tools/misc/make_synthetic_faces.py data/synthetic --num-ids 300
"""
import argparse
import json
import os.path as osp
import time

from mmfacekd.datasets.synthetic.identification_set import (
    write_identification_set,
)
from mmfacekd.datasets.synthetic.ijb_bundle import write_ijb_bundle
from mmfacekd.datasets.synthetic.synthetic_set import (
    DEFAULT_PAIR_SETS,
    DEFAULT_VAL_IDS,
    PairSetSpec,
    make_synthetic_faces,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('out_dir', help='output folder, e.g. data/synthetic')
    p.add_argument('--num-ids', type=int, default=300)
    p.add_argument('--min-imgs', type=int, default=15)
    p.add_argument('--max-imgs', type=int, default=25)
    p.add_argument('--pairs', type=int, default=None,
                   help='pairs per verification set (default: '
                   f'{DEFAULT_PAIR_SETS[0].num_pairs} each)')
    p.add_argument('--val-ids', type=int, default=DEFAULT_VAL_IDS,
                   help='identities (disjoint from training) per pair set')
    p.add_argument('--difficulty', type=float, default=1.0)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--identification', action='store_true',
                   help='also write <out>/identification (probe + '
                   'distractor images and list files)')
    p.add_argument('--identification-only', action='store_true',
                   help='write only <out>/identification')
    p.add_argument('--ijb', action='store_true',
                   help='also write <out>/ijb (an IJB-style template bundle: '
                   'loose crops + 5-point landmarks + templates/media/pairs)')
    p.add_argument('--ijb-only', action='store_true',
                   help='write only <out>/ijb')
    p.add_argument('--probe-ids', type=int, default=None,
                   help='probe identities of the 1:N set (default: 50)')
    p.add_argument('--distractors', type=int, default=None,
                   help='distractor identities (one image each) of the 1:N '
                   'set (default: 2000)')
    p.add_argument('--ijb-ids', type=int, default=None,
                   help='identities of the IJB-style bundle (default: 150)')
    return p.parse_args()


def main() -> None:
    args = parse_args()
    sets = DEFAULT_PAIR_SETS
    if args.pairs is not None:
        sets = tuple(PairSetSpec(s.name, args.pairs, s.difficulty)
                     for s in sets)
    t0 = time.time()
    if args.ijb or args.ijb_only:
        kw = {} if args.ijb_ids is None else dict(num_ids=args.ijb_ids)
        ijb = write_ijb_bundle(osp.join(args.out_dir, 'ijb'), seed=args.seed,
                               difficulty=args.difficulty,
                               workers=args.workers, **kw)
        if args.ijb_only:
            ijb['seconds'] = round(time.time() - t0, 1)
            print(json.dumps(dict(ijb=ijb)))
            return
    if args.identification or args.identification_only:
        kw = {}
        if args.probe_ids is not None:
            kw['num_probe_ids'] = args.probe_ids
        if args.distractors is not None:
            kw['num_distractor_ids'] = args.distractors
        ident = write_identification_set(
            osp.join(args.out_dir, 'identification'), seed=args.seed,
            difficulty=args.difficulty, workers=args.workers, **kw)
        if args.identification_only:
            ident['seconds'] = round(time.time() - t0, 1)
            print(json.dumps(dict(identification=ident)))
            return
    summary = make_synthetic_faces(
        args.out_dir, num_ids=args.num_ids, min_imgs=args.min_imgs,
        max_imgs=args.max_imgs, pair_sets=sets, val_ids=args.val_ids,
        seed=args.seed, difficulty=args.difficulty, workers=args.workers)
    if args.identification:
        summary['identification'] = ident
    if args.ijb:
        summary['ijb'] = ijb
    summary['seconds'] = round(time.time() - t0, 1)
    print(json.dumps(summary))


if __name__ == '__main__':
    main()

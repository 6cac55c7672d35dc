"""Merge per-rank Partial FC shard files into one full (C, D) head.

Reads insightface arcface_torch's ``softmax_fc_gpu_<rank>.pt`` files (a
state dict with ``weight``, or a bare tensor) or any per-rank files holding
a ``weight`` / ``*.weight`` tensor, in rank order (sorted by the number in
the file name), checks the layout (``C // W`` classes per rank, one more on
the first ``C % W`` ranks: insightface's and mmfacekd's), and writes
``dict(state_dict=dict(weight=...))``: a ``teacher_head_ckpt`` for a
``PartialFCHead`` or ``MarginHead`` teacher (each rank of a sharded head
keeps its rows when loading).

Example:
    python tools/misc/merge_partial_fc.py work_dirs/r50/softmax_fc_gpu_*.pt \\
        --num-classes 85742 --out checkpoints/r50_head.pth
"""
import argparse
import re
from typing import List, Optional, Sequence

import torch

from mmfacekd.models.heads.shard_checkpoint import merge_shards
from mmfacekd.utils import load_checkpoint_safely


def _rank_key(path: str):
    numbers = re.findall(r'\d+', path.rsplit('/', 1)[-1])
    return (int(numbers[-1]) if numbers else -1, path)


def _weight(path: str, key: Optional[str]) -> torch.Tensor:
    obj = load_checkpoint_safely(path)
    if isinstance(obj, torch.Tensor):
        return obj
    state = obj.get('state_dict', obj)
    keys = [key] if key else [k for k in state if k == 'weight'
                              or k.endswith('.weight')]
    if len(keys) != 1 or keys[0] not in state:
        raise SystemExit(f'{path}: expected one `weight` tensor, found keys '
                         f'{sorted(state)[:10]}; pass --key')
    return state[keys[0]]


def merge_files(paths: Sequence[str], num_classes: int, out: str,
                key: Optional[str] = None) -> torch.Tensor:
    """Merge the shard files ``paths`` into ``out``; return the head."""
    paths: List[str] = sorted(paths, key=_rank_key)
    try:
        full = merge_shards([_weight(p, key) for p in paths], num_classes,
                            paths)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    torch.save(dict(state_dict=dict(weight=full),
                    meta=dict(merged_from=list(paths))), out)
    return full


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('shards', nargs='+', help='per-rank shard files')
    p.add_argument('--num-classes', type=int, required=True)
    p.add_argument('--out', required=True, help='output head checkpoint')
    p.add_argument('--key', default=None, help='state-dict key of the '
                   'weight (default: the one `weight` / `*.weight`)')
    args = p.parse_args(argv)
    full = merge_files(args.shards, args.num_classes, args.out, args.key)
    print(f'{args.out}: head {tuple(full.shape)} from {len(args.shards)} '
          'shards')


if __name__ == '__main__':
    main()

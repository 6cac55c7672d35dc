"""insightface arcface_torch weights → an mmfacekd checkpoint.

``backbone.pth`` (``torch.save(backbone.state_dict())``) already uses
mmfacekd's names for IResNet and MobileFaceNet (both are state-dict
compatible), so the backbone needs only the ``backbone.`` prefix — the
mapping a distiller applies with ``teacher_revise_keys=[(r'^',
'backbone.')]`` (:func:`~mmfacekd.models.distillers.revise_state_dict`).
The classifier of arcface_torch lives in Partial FC: every rank ``r`` of a
``W``-process run saves its slice of the class centres,
``softmax_fc_gpu_{r}.pt`` = ``{'weight': (C_r, D)}`` (``PartialFC_V2``;
``checkpoint_gpu_{r}.pt`` holds it as ``state_dict_softmax_fc``), with
``C_r = C // W + (r < C % W)`` consecutive classes — the layout of
mmfacekd's own sharded head, whose ``merge_shards`` does the merge.
Concatenated in rank order they are the (C, D) matrix of
:class:`MarginHead` (``head.weight``, same layout:
``normalize(W) · normalize(x)``).
"""
import re
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from mmfacekd.models.distillers import revise_state_dict
from mmfacekd.models.heads.shard_checkpoint import merge_shards
from mmfacekd.utils.checkpoint_safety import load_checkpoint_safely

from .model_loading import load_embedding_weights


class ConversionError(ValueError):
    """The insightface files do not fit the target config."""


def _rank_of(path: str) -> int:
    found = re.findall(r'(\d+)', path.rsplit('/', 1)[-1])
    if not found:
        raise ConversionError(
            f'{path}: no rank number in the file name (insightface writes '
            'softmax_fc_gpu_<rank>.pt); rename the shards or pass them in '
            'rank order with --keep-order.')
    return int(found[-1])


def order_shards(paths: Sequence[str]) -> List[str]:
    """Shard files sorted by the rank number in their names (numerically:
    ``gpu_10`` after ``gpu_9``); the ranks must be exactly 0 … W−1."""
    ranks = [_rank_of(p) for p in paths]
    missing = sorted(set(range(len(paths))) - set(ranks))
    if len(set(ranks)) != len(ranks) or missing:
        raise ConversionError(
            f'shard ranks {sorted(ranks)} are not 0..{len(paths) - 1} '
            f'(missing rank(s) {missing or "none"}, or a rank given twice): '
            'pass every softmax_fc_gpu_*.pt of the run, once.')
    return [p for _, p in sorted(zip(ranks, paths))]


def _shard_weight(obj, path: str) -> torch.Tensor:
    if isinstance(obj, dict) and 'state_dict_softmax_fc' in obj:
        obj = obj['state_dict_softmax_fc']
    if isinstance(obj, dict):
        weights = {k: v for k, v in obj.items()
                   if k.split('.')[-1] == 'weight' and torch.is_tensor(v)}
        if len(weights) != 1:
            raise ConversionError(
                f'{path}: expected one class-centre "weight" tensor (a '
                f'PartialFC state dict), found keys {sorted(obj)[:10]}.')
        obj = next(iter(weights.values()))
    if not torch.is_tensor(obj) or obj.dim() != 2:
        raise ConversionError(f'{path}: not a (classes, dim) class-centre '
                              'matrix.')
    return obj.float()


def merge_fc_shards(paths: Sequence[str],
                    num_classes: Optional[int] = None,
                    keep_order: bool = False) -> torch.Tensor:
    """The full (C, D) class-centre matrix from per-rank Partial FC files.

    The files are ordered by rank (:func:`order_shards`, unless
    ``keep_order``) and merged by mmfacekd's own
    :func:`~mmfacekd.models.heads.shard_checkpoint.merge_shards`, which
    checks every slice against the class layout of ``num_classes`` (default:
    the total row count, which still catches a reordered set).
    """
    paths = list(paths) if keep_order else order_shards(paths)
    weights = [_shard_weight(load_checkpoint_safely(p), p) for p in paths]
    total = sum(len(w) for w in weights)
    try:
        return merge_shards(weights, num_classes or total, paths)
    except ValueError as err:
        raise ConversionError(str(err)) from err


def convert_insightface(recognizer: nn.Module, backbone_path: str,
                        fc_shards: Sequence[str] = (),
                        config: str = '<config>', keep_order: bool = False
                        ) -> Dict[str, torch.Tensor]:
    """A FaceRecognizer state dict (``backbone.*`` [+ ``head.weight``]).

    The backbone is loaded strictly into ``recognizer`` (which must be
    built from the matching config), so a wrong architecture fails here
    with the differing keys and shapes, not later in training.
    """
    state = load_checkpoint_safely(backbone_path)
    if isinstance(state, dict) and 'state_dict_backbone' in state:
        state = state['state_dict_backbone']  # checkpoint_gpu_0.pt
    state = state.get('state_dict', state)
    state = revise_state_dict(state, [(r'^module\.', ''),
                                      (r'^(?!backbone\.)', 'backbone.')])
    load_embedding_weights(recognizer, state, backbone_path, config)
    out = {k: v.detach().clone() for k, v in state.items()}
    if fc_shards:
        head = getattr(recognizer, 'head', None)
        weight = merge_fc_shards(
            fc_shards, None if head is None else head.weight.shape[0],
            keep_order)
        if head is not None and tuple(head.weight.shape) != tuple(
                weight.shape):
            raise ConversionError(
                f'the merged class centres are {tuple(weight.shape)} but '
                f'{config} has a head of {tuple(head.weight.shape)}; set '
                f'head.num_classes={weight.shape[0]} and '
                f'head.in_channels={weight.shape[1]}.')
        out['head.weight'] = weight
    return out


def save_converted(state: Dict[str, torch.Tensor], out: str,
                   prefix: str = '', meta: Optional[Dict[str, Union[
                       str, int, List[str]]]] = None) -> None:
    """``torch.save`` a checkpoint that loads with ``weights_only=True``;
    ``prefix='student.'`` gives a distiller's ``load_from`` layout."""
    import os
    import os.path as osp
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save(dict(state_dict={prefix + k: v for k, v in state.items()},
                    meta=dict(meta or {})), out)

"""Checks of class-sharded logits shared by the sharded losses."""
from typing import NamedTuple, Optional

from torch import Tensor

from ...utils.class_shard import column_offsets, get_rank
from ...utils.dist_checks import check_batch_across_ranks
from ..utils import check_logits_pair

__all__ = ['Columns', 'check_sharded_logits']


class Columns(NamedTuple):
    """This rank's first global column ``offset`` and the global number of
    columns ``total`` (all ranks)."""
    offset: int
    total: int


def check_sharded_logits(who: str, student_logits: Tensor,
                         teacher_logits: Tensor,
                         gt_label: Optional[Tensor] = None,
                         need_label: bool = False) -> Columns:
    """Check the local (B, C_l) logits of a sharded loss on all ranks at
    once and return where this rank's columns lie among all ranks' (see
    :func:`~mmfacekd.models.utils.class_shard.column_offsets`).

    Every rank must hold the same B rows (the global batch) and, when given,
    the same ``gt_label`` as global columns in ``[0, C)``.
    """
    check_logits_pair(student_logits, teacher_logits)
    offsets = column_offsets(student_logits.size(1), student_logits.device)
    if need_label and gt_label is None:
        raise ValueError(f'{who} needs gt_label (the column labels, '
                         "PartialFCHead's `column_label`)")
    label = None if gt_label is None else gt_label.reshape(-1)
    if label is not None and label.numel() != student_logits.size(0):
        raise ValueError(f'{who}: gt_label has {label.numel()} entries for '
                         f'{student_logits.size(0)} logit rows')
    check_batch_across_ranks(
        who, student_logits.size(0), label, offsets[-1],
        student_logits.device, rows_field='number of logit rows',
        rows_fix='Sharded losses read all rows of the global batch on every '
        "rank: pass PartialFCHead's logits, not a per-rank batch.")
    if label is not None and label.numel() and int(label.min()) < 0:
        raise ValueError(f'{who}: gt_label has -1 (ignored) entries; this '
                         'loss needs a class for every row')
    return Columns(offsets[get_rank()], offsets[-1])

"""Input checks and preparation shared by the distillation losses."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..utils import gather_no_grad, gather_with_grad

__all__ = [
    'check_logits_pair', 'prepare_embedding_pair', 'BatchLoss',
    'check_center_inputs'
]


class BatchLoss(nn.Module):
    """Base of the losses computed on a batch that may be gathered over
    all ranks, scaled by a weight.

    Args:
        gather (bool): Compute on the batch gathered over all ranks.
            Defaults to True.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self, gather: bool = True, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.gather = bool(gather)
        self.loss_weight = float(loss_weight)


def check_logits_pair(student_logits: Tensor, teacher_logits: Tensor) -> None:
    """Check that student and teacher logits share one (B, C) shape.

    Args:
        student_logits (Tensor): Student logits (B, C).
        teacher_logits (Tensor): Teacher logits (B, C).

    Raises:
        ValueError: If the shapes differ or are not 2-D.
    """
    if student_logits.shape != teacher_logits.shape \
            or student_logits.dim() != 2:
        raise ValueError('expected student and teacher logits of the same '
                         f'(B, C) shape, got {tuple(student_logits.shape)}'
                         f' and {tuple(teacher_logits.shape)}')


def check_center_inputs(owner: str, student: Tensor, teacher: Tensor,
                        labels: Tensor, num_classes: int, dim: int) -> None:
    """Check (B, D) embeddings and (B, ) labels against (C, D) class centres.

    Args:
        owner (str): The loss, named in the errors.
        student, teacher (Tensor): (B, D) embeddings.
        labels (Tensor): (B, ) labels (``< 0``: ignored).
        num_classes (int): C.
        dim (int): D.

    Raises:
        ValueError: naming the mismatch and the setting that fixes it.
    """
    if labels.numel() != student.size(0):
        raise ValueError(f'{owner}: {labels.numel()} labels for '
                         f'{student.size(0)} embeddings')
    if {student.size(1), teacher.size(1)} != {dim}:
        raise ValueError(
            f'{owner}: the class centres are {dim}-d, the student embedding '
            f'{student.size(1)}-d and the teacher embedding '
            f'{teacher.size(1)}-d; they must agree (set embed_dim, or match '
            'the necks)')
    if labels.numel() and int(labels.max()) >= num_classes:
        raise ValueError(f'{owner}: label {int(labels.max())} >= num_classes '
                         f'{num_classes} of the class centres; set '
                         'num_classes to the identities of the training set')


def prepare_embedding_pair(student: Tensor,
                           teacher: Tensor,
                           normalize: bool = False,
                           gather: bool = False,
                           flatten: bool = True) -> Tuple[Tensor, Tensor]:
    """Student and teacher embeddings as (B, D) rows ready for a loss.

    Checks the batch sizes, flattens every sample (or requires (B, D)
    inputs), upcasts both to the student's dtype (float32 for half
    precision), detaches the teacher, optionally L2-normalizes the rows and
    optionally concatenates the batches of all ranks in rank order (the
    student with :func:`gather_with_grad`, the teacher without gradient).

    Args:
        student (Tensor): (B, ...) student embeddings or features.
        teacher (Tensor): (B, ...) teacher embeddings or features (any
            width).
        normalize (bool): L2-normalize the rows. Defaults to False.
        gather (bool): All-gather both over the ranks. Defaults to False.
        flatten (bool): Flatten (B, ...) inputs per sample; False requires
            (B, D) inputs. Defaults to True.

    Returns:
        tuple[Tensor, Tensor]: The (B, D) student rows (with gradient) and
        the (B, D') teacher rows (detached), B the global batch with
        ``gather``.

    Raises:
        ValueError: If the batch sizes differ, or with ``flatten=False`` an
            input is not 2-D.
    """
    if student.size(0) != teacher.size(0) or not flatten and (
            student.dim() != 2 or teacher.dim() != 2):
        layout = '(B, ...)' if flatten else '(B, D)'
        raise ValueError(f'expected {layout} student and teacher embeddings '
                         f'with the same B, got {tuple(student.shape)} and '
                         f'{tuple(teacher.shape)}')
    dtype = student.dtype
    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    xs = student.flatten(1).to(dtype)
    xt = teacher.detach().flatten(1).to(dtype)
    if normalize:
        xs = F.normalize(xs, dim=1)
        xt = F.normalize(xt, dim=1)
    if gather:
        xs = gather_with_grad(xs)
        xt = gather_no_grad(xt)
    return xs, xt

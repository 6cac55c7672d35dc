r"""Per-rank memory of a :class:`PartialFCHead` student and its frozen
sharded teacher head (issue 12, docs/partial_fc.md "Memory model").

Symbols: ``C`` classes, ``D`` embedding size, ``W`` ranks, sample rate
``r``, ``B`` the global batch (all ranks), ``b`` bytes per weight element
(``dtype``; the logits and softmax statistics are float32 whatever the
autocast dtype). Per rank:

.. math::
    C_r = \lceil C / W \rceil, \qquad
    C_s = C_r \text{ if } r = 1 \text{ else } \lfloor r C_r \rfloor

* weight, gradient, SGD momentum: :math:`C_r D b` each (the gradient of
  the kept rows is scattered into a dense ``(C_r, D)`` tensor);
* student forward (logits, margin logits, the cross-entropy's shifted
  logits and exponentials): :math:`4 \cdot 4 B C_s` plus the normalised
  weight :math:`C_r D b` (``r = 1``) or the kept rows and their
  normalisation :math:`2 C_s D b` (``r < 1``);
* student backward: the gradient plus :math:`4 C_r D b` (``r = 1``) or
  :math:`2 C_s D b` (``r < 1``) for the normalisation's backward, plus
  :math:`2.4 \cdot 4 B C_s` of logit gradients;
* teacher (no autograd, on the student's columns, so it always copies
  its kept rows, :math:`c = C_s D b`): weight :math:`C_r D b`; forward
  peak :math:`\max(2c + 4 B C_s,\ c + 4 \cdot 4 B C_s)`; its logits and
  margin logits (:math:`2 \cdot 4 B C_s`) live until the distillation
  loss has run;
* distillation loss on the sharded logits, forward + backward:
  :math:`7 \cdot 4 B C_s` (GKD, DKD), :math:`4 \cdot 4 B C_s` (KD).

The counts of ``B x C_s`` and ``C_s x D`` buffers were read off the live
tensor bytes of a real step (``torch.profiler`` memory events, CPU) and
are checked against measured peaks on 1 and 2 gloo ranks at other sizes
(``tests/test_models/test_heads/test_partial_fc_memory.py``). Positives
of the batch beyond ``floor(r * C_r)`` (``B`` large, ``r`` tiny) add
columns; the model ignores them.
"""
import math
from typing import Dict, Union

import torch

#: float32 ``B x C_s`` buffers: student forward / backward, teacher
#: forward, teacher logits kept for the loss, KD / GKD forward + backward
LOGIT_BUFFERS = dict(student_fwd=4.0, student_bwd=2.4, teacher_fwd=4.0,
                     teacher_kept=2.0, kd=4.0, gkd=7.0)


def _bytes(dtype: Union[torch.dtype, str, int]) -> int:
    if isinstance(dtype, int):
        return dtype
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return torch.empty((), dtype=dtype).element_size()


def partial_fc_memory(num_classes: int,
                      dim: int,
                      world_size: int,
                      sample_rate: float,
                      batch_global: int,
                      dtype: Union[torch.dtype, str, int] = torch.float32,
                      loss: str = 'gkd') -> Dict[str, int]:
    """Per-rank bytes of a Partial FC student head, its frozen sharded
    teacher head and the sharded distillation loss (the formulas of the
    module docstring; the largest rank, ``ceil(C / W)`` classes).

    Args:
        num_classes (int): ``C``.
        dim (int): Embedding size ``D``.
        world_size (int): ``W``.
        sample_rate (float): ``r`` in (0, 1].
        batch_global (int): ``B``, the batch of all ranks.
        dtype (torch.dtype | str | int): Weight dtype (or bytes per
            element); gradients and momentum have it too. Defaults to
            float32.
        loss (str): ``'gkd'``, ``'kd'`` or ``'none'``. Defaults to 'gkd'.

    Returns:
        dict: ``classes_per_rank``, ``kept_per_rank`` (counts) and bytes:
        ``student_weight``, ``student_grad``, ``student_momentum``,
        ``student_logits`` (forward ``B x C_s`` buffers), ``student_fwd``,
        ``student_bwd`` (transient peaks of the two passes),
        ``student_step_peak`` (weight + momentum + the larger pass),
        ``teacher_weight``, ``teacher_logits`` (kept for the loss),
        ``teacher_fwd_peak`` (weight + forward transients), ``loss_peak``
        and ``total`` (every persistent state plus an upper bound of the
        transients: the student's larger pass, the teacher's kept logits
        and the loss).
    """
    if not 0 < sample_rate <= 1:
        raise ValueError(f'sample_rate must be in (0, 1], got {sample_rate}')
    if loss not in ('gkd', 'kd', 'none'):
        raise ValueError(f"loss must be 'gkd', 'kd' or 'none', got {loss!r}")
    b = _bytes(dtype)
    rows = math.ceil(num_classes / world_size)
    kept = rows if sample_rate >= 1 else max(
        1, math.floor(sample_rate * rows))
    logit = 4 * batch_global * kept  # one float32 B x C_s buffer
    shard = rows * dim * b
    copies = shard if sample_rate >= 1 else 2 * kept * dim * b
    bwd_copies = 4 * shard if sample_rate >= 1 else 2 * kept * dim * b
    n = LOGIT_BUFFERS
    out = dict(classes_per_rank=rows, kept_per_rank=kept,
               student_weight=shard, student_grad=shard,
               student_momentum=shard,
               student_logits=int(n['student_fwd'] * logit))
    out['student_fwd'] = out['student_logits'] + copies
    out['student_bwd'] = shard + bwd_copies + int(n['student_bwd'] * logit)
    out['student_step_peak'] = 2 * shard + max(out['student_fwd'],
                                               out['student_bwd'])
    out['teacher_weight'] = shard
    out['teacher_logits'] = int(n['teacher_kept'] * logit)
    rows_copy = kept * dim * b  # the teacher's weight[class_index]
    out['teacher_fwd_peak'] = shard + max(
        2 * rows_copy + logit, rows_copy + int(n['teacher_fwd'] * logit))
    out['loss_peak'] = 0 if loss == 'none' else int(n[loss] * logit)
    out['total'] = (out['student_step_peak'] + out['teacher_weight']
                    + out['teacher_logits'] + out['loss_peak'])
    return out


def peak_tensor_bytes(fn) -> int:
    """Peak of the tensor bytes allocated and not yet freed while ``fn()``
    runs (CPU; ``torch.profiler`` memory events), i.e. what ``fn`` adds on
    top of the tensors alive before it. Allocator caching and other
    processes do not enter it."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes())
                    for e in prof.profiler.kineto_results.events()
                    if e.name() == '[memory]')
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def measure_partial_fc_memory(num_classes: int, dim: int,
                              sample_rate: float, batch_local: int,
                              seed: int = 0) -> Dict[str, int]:
    """Measured counterparts of :func:`partial_fc_memory` on this rank (a
    process group of any size, or none): a real SGD step of a
    :class:`PartialFCHead`, a frozen sharded teacher head on the student's
    columns and ``ShardedGKDLoss`` on the sharded logits.

    Returns:
        dict: ``student_step_peak`` (weight + momentum + the step's peak),
        ``teacher_fwd_peak`` (weight + the no-grad forward's peak),
        ``loss_peak`` (GKD forward + backward) and ``kept_per_rank``.
    """
    from ..losses.sharded import ShardedGKDLoss
    from .partial_fc_head import PartialFCHead
    torch.manual_seed(seed)
    student = PartialFCHead(num_classes, in_channels=dim,
                            sample_rate=sample_rate, seed=seed)
    teacher = PartialFCHead(num_classes, in_channels=dim).eval()
    teacher.requires_grad_(False)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_local, dim, generator=gen)
    y = torch.randint(0, num_classes, (batch_local, ), generator=gen)
    kept = {}

    def step():
        out = student.get_logits(x, y)
        student.loss_by_logits(out)['loss_cls'].backward()
        optimizer.step()
        kept['index'] = out['class_index']

    step()  # the momentum exists from the first step on
    optimizer.zero_grad(set_to_none=True)
    persistent = student.weight.nbytes + \
        optimizer.state[student.weight]['momentum_buffer'].nbytes
    out = dict(student_step_peak=persistent + peak_tensor_bytes(step),
               kept_per_rank=int(kept['index'].numel()))
    index = kept['index']

    def teacher_forward():
        with torch.no_grad():
            kept['t'] = teacher.get_logits(x, y, class_index=index)

    out['teacher_fwd_peak'] = teacher.weight.nbytes + \
        peak_tensor_bytes(teacher_forward)
    s_out = student.get_logits(x, y, class_index=index)
    s_logits = s_out['margin_logits'].detach().requires_grad_()
    t_logits = kept.pop('t')['margin_logits']
    label = s_out['column_label']
    del s_out
    loss = ShardedGKDLoss(temperature=4.0)

    def loss_step():
        loss(s_logits, t_logits, label)['loss'].backward()

    out['loss_peak'] = peak_tensor_bytes(loss_step)
    return out

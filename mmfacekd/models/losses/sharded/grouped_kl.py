r"""GKD eq. 5, 6, 9 on class-sharded logits.

Zhao et al., *Grouped Knowledge Distillation for Deep Face Recognition*
(AAAI 2023), see ``docs/papers.md`` §1. Each rank holds all rows and its
columns of both networks' logits. The per-group sums of
:func:`~mmfacekd.models.losses.gkd.grouped_kl.kl_from_group_sums`
(:math:`Z_g`, :math:`D_g`, group sizes) are local masked sums reduced
over the ranks (one all-reduce), with one row-wide shift per network (the
row maximum over all ranks); the KL terms are then the single-process
formulas on the reduced sums, and the sums have an analytic backward that
passes the replicated gradient through (as
:mod:`mmfacekd.models.utils.replicated`). Rows where a non-empty group
would underflow with the row-wide shift are recomputed with a shift per
group (:func:`_per_group_shift_terms`).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from ...utils import get_world_size
from ...utils.replicated import global_max, replicated_sum
from ..gkd.grouped_kl import GroupedKLTerms, kl_from_group_sums
from ..gkd.softmax import SoftmaxStats, softmax_stats

__all__ = ['sharded_grouped_kl_terms']


class _Groups:
    """Phi / Psi of a boolean mask as 0/1 floats, for arithmetic instead of
    ``torch.where`` (a data-dependent mask makes ``where`` several times
    slower on CPU). Exact for finite ``x > -max``: ``x * 1 = x``,
    ``x * 0 = 0``, and the group maximum is that of ``x`` on the group and
    ``-max`` (the float's lowest) elsewhere, ``-max`` for an empty group."""

    def __init__(self, mask: Tensor, dtype: torch.dtype) -> None:
        self.phi = mask.to(dtype)
        self.psi = 1.0 - self.phi
        self.lowest = torch.finfo(dtype).min

    def max(self, *xs: Tensor) -> Tensor:
        """(B, 2 len(xs)) row maxima of each ``x`` over Phi and Psi."""
        out = []
        for group, other in ((self.phi, self.psi), (self.psi, self.phi)):
            off = other * self.lowest
            out.append([torch.addcmul(off, x, group).amax(dim=1)
                        for x in xs])
        return torch.stack([m for pair in zip(*out) for m in pair], dim=1)

    def sums(self, x: Tensor) -> Tensor:
        """(B, 2) row sums of ``x`` over Phi and Psi."""
        return torch.stack([(x * self.phi).sum(dim=1),
                            (x * self.psi).sum(dim=1)], dim=1)

    def per_column(self, shift: Tensor) -> Tensor:
        """(B, C_l) shift of each column's own group (``shift`` (B, 2),
        finite)."""
        return torch.addcmul(self.psi * shift[:, 1:], self.phi, shift[:, :1])


def _per_group_shift_terms(student_logits: Tensor,
                           teacher_logits: Tensor,
                           primary_mask: Tensor,
                           temperature: float = 1.0) -> GroupedKLTerms:
    r""":func:`sharded_grouped_kl_terms` with a shift per group (its
    maximum over all ranks): no non-empty group underflows, at about twice
    the passes over the columns; used for the rows whose group sums
    underflow with the row-wide shift.

    Args:
        student_logits (Tensor): Local columns (B, C_l) of the student.
        teacher_logits (Tensor): The same columns of the teacher
            (constant).
        primary_mask (Tensor): Local columns of :math:`\Phi` (B, C_l).
        temperature (float): :math:`T`. Defaults to 1.0.

    Returns:
        GroupedKLTerms: Per-sample terms (replicated on every rank); the
        gradient reaches ``student_logits`` only, and is the single-process
        gradient of these columns.
    """
    dtype = _compute_dtype(student_logits)
    with torch.autocast(student_logits.device.type, enabled=False):
        s = student_logits.to(dtype)
        t = teacher_logits.detach().to(dtype)
        groups = _Groups(primary_mask.bool(), dtype)
        a, b = s / temperature, t / temperature
        with torch.no_grad():
            shift = global_max(groups.max(a.detach(), b))
            shift = torch.where(shift > groups.lowest, shift,
                                torch.zeros_like(shift))  # empty groups
            et = (b - groups.per_column(shift[:, 2:])).exp()
            sizes = torch.stack([groups.phi.sum(dim=1),
                                 groups.psi.sum(dim=1)], dim=1)
        es = (a - groups.per_column(shift[:, :2])).exp()
        sums = replicated_sum(torch.cat([
            groups.sums(es), groups.sums(et * (t - s)),
            groups.sums(et), sizes], dim=1))
        z_s, cross, z_t, n = sums.split(2, dim=1)
        kl, binary, p_s, p_t = kl_from_group_sums(
            z_s, z_t, shift[:, :2], shift[:, 2:], cross, n > 0, temperature)
    return GroupedKLTerms(kl[:, 0], kl[:, 1], binary, p_t[:, 0].detach(),
                          p_t[:, 1].detach(), p_s[:, 0].detach())


def _compute_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float32, torch.float64) \
        else torch.float32


class _GroupSums(torch.autograd.Function):
    """Per row and group, summed over the ranks: the student's and the
    teacher's sums of exponentials ``Z_g`` (row-wide shifts), the cross
    term ``D_g`` and the group size, from the local columns. Forward:
    masked sums (products with the 0/1 group indicators) and one
    all-reduce; backward (replicated gradient, like
    :func:`replicated_sum`): ``dZ^S_g e^S_i / T - dD_g e^T_i`` per column
    ``i`` of group ``g``, in a few passes."""

    @staticmethod
    def forward(ctx, s: Tensor, t: Tensor, es: Tensor, et: Tensor,
                phi: Optional[Tensor], temperature: float
                ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        etd = torch.sub(t, s).mul_(et)
        if phi is None:  # one group: U
            parts = [x.sum(dim=1, keepdim=True) for x in (es, et, etd)]
            parts.append(torch.full_like(parts[0], s.size(1)))
        else:  # masked sums in one scratch buffer (torch.sum's pairwise
            # summation: a BLAS dot product accumulates less accurately)
            psi = 1.0 - phi
            buf = torch.empty_like(es)
            parts = [torch.stack([torch.mul(x, g, out=buf).sum(dim=1)
                                  for g in (phi, psi)], dim=1)
                     for x in (es, et, etd)]
            n_phi = phi.sum(dim=1, keepdim=True)
            parts.append(torch.cat([n_phi, s.size(1) - n_phi], dim=1))
            del psi, buf
        del etd
        sums = torch.cat(parts, dim=1)
        if get_world_size() > 1:
            dist.all_reduce(sums)
        ctx.save_for_backward(es, et, phi)
        ctx.temperature = temperature
        z_s, z_t, cross, n = (x.contiguous()
                              for x in sums.split(parts[0].size(1), dim=1))
        ctx.mark_non_differentiable(z_t, n)
        return z_s, z_t, cross, n

    @staticmethod
    def backward(ctx, d_zs, d_zt, d_cross, d_n):
        es, et, phi = ctx.saved_tensors
        psi = None if phi is None else 1.0 - phi

        def per_column(g: Tensor) -> Tensor:  # (B, G) -> (B, C_l)
            if phi is None:
                return g
            # phi g_0 + psi g_1: exact (not g_1 + phi (g_0 - g_1), which
            # rounds g_0 by |g_1|: the small group's gradient can be large)
            return torch.addcmul(psi * g[:, 1:], phi, g[:, :1])

        grad = per_column(d_zs / ctx.temperature) * es
        grad.sub_(per_column(d_cross) * et)
        return grad, None, None, None, None, None


def _underflow_rows(sums: Sequence[Tensor], nonempty: Tensor,
                    dtype: torch.dtype) -> Tensor:
    """Rows where a non-empty group's sum of exponentials (student or
    teacher) is so small that subnormal terms could matter (below
    ``tiny / eps^2``: then their share is below ``C eps^2``)."""
    info = torch.finfo(dtype)
    floor = info.tiny / info.eps ** 2
    low = torch.zeros_like(nonempty)
    for z in sums:
        low |= nonempty & (z.detach() < floor)
    return low.any(dim=1)


def sharded_grouped_kl_terms(student_logits: Tensor,
                             teacher_logits: Tensor,
                             primary_mask: Optional[Tensor],
                             temperature: float = 1.0,
                             student_stats: Optional[SoftmaxStats] = None,
                             teacher_stats: Optional[SoftmaxStats] = None
                             ) -> GroupedKLTerms:
    r"""Primary-, Secondary- and Binary-KD (eq. 5, 6, 9) of the global rows
    from the local columns; see
    :func:`~mmfacekd.models.losses.gkd.grouped_kl_terms` for the math.

    One row-wide shift per network (the row maximum over all ranks, as
    :func:`sharded_softmax_stats`) serves both groups, so the exponentials
    are those of a plain softmax (KD's) and can be shared with the eq. 3
    search. A row where a non-empty group's sum would underflow with it
    (the group lies ~85 / ~700 nats below the row maximum in float32 /
    float64) is recomputed with a shift per group, so no group is lost.

    Args:
        student_logits (Tensor): Local columns (B, C_l) of the student.
        teacher_logits (Tensor): The same columns of the teacher
            (constant).
        primary_mask (Tensor, optional): Local columns of :math:`\Phi`
            (B, C_l); None: :math:`\Phi = U` (KD).
        temperature (float): :math:`T`. Defaults to 1.0.
        student_stats, teacher_stats (SoftmaxStats, optional): The
            statistics at ``temperature`` from :func:`sharded_softmax_stats`
            when already computed (e.g. for eq. 3); they must be of these
            logits in the compute dtype.

    Returns:
        GroupedKLTerms: Per-sample terms (replicated on every rank); the
        gradient reaches ``student_logits`` only, and is the single-process
        gradient of these columns.
    """
    if student_logits.shape != teacher_logits.shape \
            or student_logits.dim() != 2 or (
                primary_mask is not None
                and student_logits.shape != primary_mask.shape):
        raise ValueError('student/teacher logits and primary_mask must share '
                         'one (B, C_local) shape')
    dtype = _compute_dtype(student_logits)
    with torch.autocast(student_logits.device.type, enabled=False):
        s = student_logits.to(dtype)
        t = teacher_logits.detach().to(dtype)
        with torch.no_grad():
            if student_stats is None or teacher_stats is None:
                row_max = global_max(torch.stack(
                    [s.detach().amax(dim=1), t.amax(dim=1)], dim=1))
            if student_stats is None:
                student_stats = softmax_stats(s.detach(), temperature,
                                              row_max=row_max[:, 0])
            if teacher_stats is None:
                teacher_stats = softmax_stats(t, temperature,
                                              row_max=row_max[:, 1])
            phi = None if primary_mask is None else primary_mask.to(dtype)
        z_s, z_t, cross, n = _GroupSums.apply(
            s, t, student_stats.exp, teacher_stats.exp, phi, temperature)
        if phi is None:  # an empty Psi
            z_s, z_t, cross, n = (torch.cat([x, torch.zeros_like(x)], 1)
                                  for x in (z_s, z_t, cross, n))
        nonempty = n > 0
        bad = _underflow_rows((z_s, z_t), nonempty, dtype)
        any_bad = bool(bad.any())  # the same rows on every rank (reduced)
        if any_bad:  # finite placeholders; these rows are replaced below
            one = torch.ones((), dtype=dtype, device=s.device)
            z_s, z_t = (torch.where(bad.unsqueeze(1), one, z)
                        for z in (z_s, z_t))
        shift_s = student_stats.shift.reshape(-1, 1).expand(-1, 2)
        shift_t = teacher_stats.shift.reshape(-1, 1).expand(-1, 2)
        kl, binary, p_s, p_t = kl_from_group_sums(
            z_s, z_t, shift_s, shift_t, cross, nonempty, temperature)
        terms = GroupedKLTerms(kl[:, 0], kl[:, 1], binary, p_t[:, 0].detach(),
                               p_t[:, 1].detach(), p_s[:, 0].detach())
        if any_bad:
            rows = bad.nonzero().squeeze(1)
            mask = primary_mask if primary_mask is not None else \
                torch.ones_like(s, dtype=torch.bool)
            exact = _per_group_shift_terms(s[rows], t[rows], mask[rows],
                                           temperature)
            terms = GroupedKLTerms(*(x.index_put((rows, ), y)
                                     for x, y in zip(terms, exact)))
    return terms

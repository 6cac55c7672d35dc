r"""GKD eq. 5, 6, 9 on class-sharded logits.

Zhao et al., *Grouped Knowledge Distillation for Deep Face Recognition*
(AAAI 2023), see ``docs/papers.md`` §1. Each rank holds all rows and its
columns of both networks' logits. The per-group sums of
:func:`~mmfacekd.models.losses.gkd.grouped_kl.kl_from_group_sums`
(:math:`Z_g`, :math:`D_g`, group sizes) are local masked sums reduced
over the ranks (one all-reduce), with a per-group shift (the group maximum
over all ranks, one all-reduce of maxima) so that no non-empty group
underflows; the KL terms are then the single-process formulas on the
reduced sums, differentiated by autograd (the reductions pass the
replicated gradient through, see :mod:`mmfacekd.models.utils.replicated`).
"""
import torch
from torch import Tensor

from ...utils.replicated import global_max, replicated_sum
from ..gkd.grouped_kl import GroupedKLTerms, kl_from_group_sums

__all__ = ['sharded_grouped_kl_terms']


def _group_max(x: Tensor, mask: Tensor) -> Tensor:
    """(B, 2) row maxima of ``x`` over Phi (``mask``) and Psi."""
    neg_inf = torch.tensor(float('-inf'), dtype=x.dtype, device=x.device)
    return torch.stack([torch.where(mask, x, neg_inf).amax(dim=1),
                        torch.where(mask, neg_inf, x).amax(dim=1)], dim=1)


def _group_sums(x: Tensor, mask: Tensor) -> Tensor:
    """(B, 2) row sums of ``x`` over Phi and Psi."""
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.stack([torch.where(mask, x, zero).sum(dim=1),
                        torch.where(mask, zero, x).sum(dim=1)], dim=1)


def _per_group(shift: Tensor, mask: Tensor) -> Tensor:
    """(B, C_l) shift of each column's own group."""
    return torch.where(mask, shift[:, :1], shift[:, 1:])


def sharded_grouped_kl_terms(student_logits: Tensor,
                             teacher_logits: Tensor,
                             primary_mask: Tensor,
                             temperature: float = 1.0) -> GroupedKLTerms:
    r"""Primary-, Secondary- and Binary-KD (eq. 5, 6, 9) of the global rows
    from the local columns; see
    :func:`~mmfacekd.models.losses.gkd.grouped_kl_terms` for the math.

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
    if student_logits.shape != teacher_logits.shape \
            or student_logits.shape != primary_mask.shape \
            or student_logits.dim() != 2:
        raise ValueError('student/teacher logits and primary_mask must share '
                         'one (B, C_local) shape')
    dtype = student_logits.dtype
    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    with torch.autocast(student_logits.device.type, enabled=False):
        s = student_logits.to(dtype)
        t = teacher_logits.detach().to(dtype)
        mask = primary_mask.bool()
        a, b = s / temperature, t / temperature
        with torch.no_grad():
            shift = global_max(torch.cat(
                [_group_max(a.detach(), mask), _group_max(b, mask)], dim=1))
            shift = torch.where(torch.isfinite(shift), shift,
                                torch.zeros_like(shift))
            et = (b - _per_group(shift[:, 2:], mask)).exp()
            sizes = _group_sums(torch.ones_like(t), mask)
        es = (a - _per_group(shift[:, :2], mask)).exp()
        sums = replicated_sum(torch.cat([
            _group_sums(es, mask), _group_sums(et * (t - s), mask),
            _group_sums(et, mask), sizes], dim=1))
        z_s, cross, z_t, n = sums.split(2, dim=1)
        kl, binary, p_s, p_t = kl_from_group_sums(
            z_s, z_t, shift[:, :2], shift[:, 2:], cross, n > 0, temperature)
    return GroupedKLTerms(kl[:, 0], kl[:, 1], binary, p_t[:, 0].detach(),
                          p_t[:, 1].detach(), p_s[:, 0].detach())

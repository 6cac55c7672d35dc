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

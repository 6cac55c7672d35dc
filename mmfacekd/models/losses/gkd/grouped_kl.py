r"""GKD eq. 5, 6, 9: within-group and binary KL divergences.

Zhao et al., *Grouped Knowledge Distillation for Deep Face Recognition*
(AAAI 2023), see ``docs/papers.md`` §1. With :math:`a = z^S / T`,
:math:`b = z^T / T`, the primary group :math:`\Phi` and the secondary group
:math:`\Psi = U \setminus \Phi`: eq. 5 (within-group predictions
:math:`\hat{p}`, :math:`\check{p}`), eq. 6 (binary prediction
:math:`p_b = [p_\Phi, p_\Psi]`) and the identity of eq. 9
:math:`\mathrm{KL}(p^T \| p^S) = p^T_\Phi \mathrm{KL}(\hat{p}^T \|
\hat{p}^S) + p^T_\Psi \mathrm{KL}(\check{p}^T \| \check{p}^S) +
\mathrm{KL}(p_b^T \| p_b^S)` are all in :func:`grouped_kl_terms`.

It is a fused autograd function: the exponentials :math:`e^{z/T - \max}` of
both networks are computed once (shared with the ranking of eq. 3, whose
exact primary mass is reused), every group quantity is a masked sum
evaluated in log space (a per-group shift where a group would underflow, a
direct sum where a difference would cancel, so empty or tiny groups never
give NaN/inf), and the backward pass writes the analytic gradient in place:
one call materialises four :math:`B \times C` float tensors in total, and
the caller may recycle three of them (``release_buffers``) since
page-faulting fresh CPU buffers costs as much as the arithmetic.
"""
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .softmax import SoftmaxStats, softmax_stats


class GroupedKLTerms(NamedTuple):
    """Per-sample outputs of :func:`grouped_kl_terms`, each of shape (B, ).

    ``primary_kd`` = KL(p̂^T‖p̂^S), ``secondary_kd`` = KL(p̌^T‖p̌^S),
    ``binary_kd`` = KL(p_b^T‖p_b^S); ``p_phi_t`` / ``p_psi_t`` = primary /
    secondary mass of the teacher, ``p_phi_s`` = primary mass of the student
    (no gradient through the masses).
    """
    primary_kd: Tensor
    secondary_kd: Tensor
    binary_kd: Tensor
    p_phi_t: Tensor
    p_psi_t: Tensor
    p_phi_s: Tensor


_SHARE_LIMIT = 2.0**-10  # below this share a group is not a difference


def _masked_sum(x: Tensor, mask: Tensor, scratch: Tensor) -> Tensor:
    """Row sums of ``x * mask`` through a scratch buffer."""
    return torch.mul(x, mask, out=scratch).sum(dim=1)


def _exp_group_sums(exps: Tuple[Tensor, Tensor], totals: Tuple[Tensor,
                                                               Tensor],
                    hints: Tuple[Optional[Tensor], Optional[Tensor]],
                    mask: Tensor, scratch: Tensor,
                    psi_nonempty: Tensor) -> Tuple[Tensor, Tensor]:
    """(B, 2) sums of each ``exp`` over Phi and Psi.

    Phi is a masked sum (or the exact ``hint`` from the ranking), Psi the
    difference to the row total, except where Psi's share is below
    ``_SHARE_LIMIT``: there it is summed directly too (no cancellation).
    """
    phis = [h if h is not None else _masked_sum(e, mask, scratch)
            for e, h in zip(exps, hints)]
    psis = [torch.where(psi_nonempty, tot - phi, torch.zeros_like(phi))
            for tot, phi in zip(totals, phis)]
    risky = [psi_nonempty & (psi < _SHARE_LIMIT * tot)
             for psi, tot in zip(psis, totals)]
    n_risky = int((risky[0] | risky[1]).sum())
    if n_risky > mask.size(0) // 4:
        for i, e in enumerate(exps):
            if bool(risky[i].any()):
                direct = torch.addcmul(e, e, mask, value=-1.0,
                                       out=scratch).sum(dim=1)
                psis[i] = torch.where(risky[i], direct, psis[i])
    elif n_risky:
        for i, e in enumerate(exps):
            rows = risky[i].nonzero().squeeze(1)
            if rows.numel():
                keep = 1 - mask[rows]
                psis[i][rows] = (e[rows] * keep).sum(dim=1)
    return (torch.stack([phis[0], psis[0]], dim=1),
            torch.stack([phis[1], psis[1]], dim=1))


def _cross_sums(s: Tensor, t: Tensor, et: Tensor, mask: Tensor,
                scratch: Tensor, z_t: Tensor,
                nonempty: Tensor) -> Tensor:
    """(B, 2) group sums of ``e^T_i (t_i - s_i)`` over Phi and Psi.

    The group with the smaller teacher mass in most rows is summed directly,
    the other one is the difference to the total; rows where that difference
    would cancel (its teacher share below ``_SHARE_LIMIT``) are summed
    directly as well.
    """
    share_phi = z_t[:, 0] / z_t.sum(dim=1)
    direct_phi = bool((share_phi < 0.5).sum() * 2 >= share_phi.numel())
    x = torch.sub(t, s, out=scratch).mul_(et)
    total = x.sum(dim=1)
    if direct_phi:
        direct = x.mul_(mask).sum(dim=1)
    else:
        direct = x.addcmul_(x, mask, value=-1.0).sum(dim=1)
    other = total - direct
    other_share = 1 - share_phi if direct_phi else share_phi
    other_nonempty = nonempty[:, 1] if direct_phi else nonempty[:, 0]
    other = torch.where(other_nonempty, other, torch.zeros_like(other))
    rows = (other_nonempty & (other_share < _SHARE_LIMIT)).nonzero()
    rows = rows.squeeze(1)
    if rows.numel():
        m = mask[rows]
        keep = 1 - m if direct_phi else m
        xr = (t[rows] - s[rows]) \
            * et[rows]
        other[rows] = (xr * keep).sum(dim=1)
    pair = (direct, other) if direct_phi else (other, direct)
    return torch.stack(pair, dim=1)


def _regroup_rows(rows: Tensor, z: Tensor, temperature: float, e: Tensor,
                  mask: Tensor, sums: Tensor, shift: Tensor) -> None:
    """Recompute rows of ``e`` with one shift per group (its own max), for
    groups whose sum underflows with the row-max shift."""
    zr = z[rows] / temperature
    m = mask[rows] > 0
    neg_inf = float('-inf')
    mx_phi = zr.masked_fill(~m, neg_inf).amax(dim=1)
    mx_psi = zr.masked_fill(m, neg_inf).amax(dim=1)
    mx_phi = torch.where(torch.isfinite(mx_phi), mx_phi,
                         torch.zeros_like(mx_phi))
    mx_psi = torch.where(torch.isfinite(mx_psi), mx_psi,
                         torch.zeros_like(mx_psi))
    er = (zr - torch.where(m, mx_phi.unsqueeze(1),
                           mx_psi.unsqueeze(1))).exp_()
    e[rows] = er
    sums[rows] = torch.stack([(er * m).sum(dim=1), (er * ~m).sum(dim=1)], 1)
    shift[rows] = torch.stack([mx_phi, mx_psi], dim=1)


def _group_coefficients(mask: Tensor, coef: Tensor, out: Tensor) -> Tensor:
    """``out = coef[:, 0]`` on Phi and ``coef[:, 1]`` on Psi.

    One pass ``c_psi + m (c_phi - c_psi)`` when the two have comparable
    magnitudes (relative error below 20 eps) or one is zero (exact);
    otherwise ``(1 - m) c_psi + m c_phi`` in two exact passes.
    """
    c_phi, c_psi = coef[:, :1], coef[:, 1:]
    a, b = c_phi.abs(), c_psi.abs()
    if bool(((a <= 8 * b) & (b <= 8 * a) | (a == 0) | (b == 0)).all()):
        return torch.addcmul(c_psi, mask, c_phi - c_psi, out=out)
    torch.addcmul(c_psi, mask, -c_psi, out=out)
    return out.addcmul_(mask, c_phi)


def kl_from_group_sums(z_s: Tensor, z_t: Tensor, sh_s: Tensor, sh_t: Tensor,
                       cross: Tensor, nonempty: Tensor, temperature: float
                       ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Eq. 5, 6, 9 from per-group sums, each (B, 2) for (:math:`\Phi`,
    :math:`\Psi`).

    With :math:`a = z^S / T`, :math:`b = z^T / T`: ``z_s`` =
    :math:`Z^S_g = \sum_{i \in g} e^{a_i - h^S_g}` with the shift ``sh_s``
    = :math:`h^S_g` (likewise ``z_t``, ``sh_t``), ``cross`` =
    :math:`D_g = \sum_{i \in g} e^{b_i - h^T_g} (z^T_i - z^S_i)` on the raw
    logits, ``nonempty`` whether each group has a class. Then
    :math:`\log Z_g + h_g` is the group log-sum-exp,
    :math:`\mathrm{KL}(\hat{p}^T_g \| \hat{p}^S_g) = D_g / (T Z^T_g) -
    \mathrm{lse}^T_g + \mathrm{lse}^S_g` and the binary masses
    :math:`p_g = \exp(\mathrm{lse}_g - \mathrm{lse}_U)`.

    Differentiable (empty groups give exact zeros and no NaN gradient), so
    the sharded loss (:mod:`mmfacekd.models.losses.sharded`) can reduce the
    sums across ranks and back-propagate through this same function.

    Returns:
        tuple: ``kl`` (B, 2) within-group KLs, ``binary`` (B, ) Binary-KD,
        ``p_s``, ``p_t`` (B, 2) the group masses of student and teacher.
    """
    neg_inf = torch.full_like(z_s, float('-inf'))
    zero = torch.zeros((), dtype=z_s.dtype, device=z_s.device)
    # an empty group: lse -inf, the log of a safe 1 keeps the gradient finite
    lse_s_g = torch.where(nonempty,
                          sh_s + torch.where(nonempty, z_s, 1.0).log(),
                          neg_inf)
    lse_t_g = torch.where(nonempty,
                          sh_t + torch.where(nonempty, z_t, 1.0).log(),
                          neg_inf)
    log_p_s = lse_s_g - torch.logsumexp(lse_s_g, dim=1, keepdim=True)
    log_p_t = lse_t_g - torch.logsumexp(lse_t_g, dim=1, keepdim=True)
    p_s, p_t = log_p_s.exp(), log_p_t.exp()
    z_t_safe = torch.where(nonempty, z_t, 1.0)
    kl = torch.where(nonempty,
                     cross / (temperature * z_t_safe) - lse_t_g + lse_s_g,
                     zero)
    binary = torch.where(p_t > 0, p_t * (log_p_t - log_p_s),
                         zero).sum(dim=1)
    return kl, binary, p_s, p_t


class _GroupedKLFunction(torch.autograd.Function):
    """Fused eq. 5, 6, 9 with an analytic, in-place backward."""

    @staticmethod
    def forward(ctx, student: Tensor, teacher: Tensor, mask: Tensor,
                temperature: float, s_stats: Optional[SoftmaxStats],
                t_stats: Optional[SoftmaxStats], scratch: Optional[Tensor],
                n_phi: Optional[Tensor], s_phi: Optional[Tensor],
                t_phi: Optional[Tensor], release) -> Tuple[Tensor, ...]:
        in_dtype = student.dtype
        dtype = torch.float32 if in_dtype in (torch.float16,
                                              torch.bfloat16) else in_dtype
        s = student.detach().to(dtype)
        t = teacher.detach().to(dtype)
        if mask.dtype != dtype:
            mask = mask.to(dtype)
        rows_n, num_classes = s.shape
        if s_stats is None:
            s_stats = softmax_stats(s, temperature)
        if t_stats is None:
            t_stats = softmax_stats(t, temperature)
        es, et = s_stats.exp, t_stats.exp
        if scratch is None:
            scratch = torch.empty_like(es)
        if n_phi is None:
            n_phi = mask.sum(dim=1)
        nonempty = torch.stack([n_phi > 0, n_phi < num_classes], dim=1)
        # Z_g = sum_{i in g} exp(z_i / T - shift_g), shift = row max.
        z_s, z_t = _exp_group_sums((es, et),
                                   (s_stats.sumexp, t_stats.sumexp),
                                   (s_phi, t_phi), mask, scratch,
                                   nonempty[:, 1])
        sh_s = s_stats.shift.unsqueeze(1).repeat(1, 2)
        sh_t = t_stats.shift.unsqueeze(1).repeat(1, 2)
        # A non-empty group whose sum (nearly) underflows with the row-max
        # shift is recomputed with its own max: exact log-sum-exp per group.
        tiny = torch.finfo(dtype).tiny * 2.0**24
        bad = (((z_s < tiny) | (z_t < tiny)) & nonempty).any(dim=1)
        bad_rows = bad.nonzero().squeeze(1)
        if bad_rows.numel():
            _regroup_rows(bad_rows, s, temperature, es, mask, z_s, sh_s)
            _regroup_rows(bad_rows, t, temperature, et, mask, z_t, sh_t)
        # D_g = sum_{i in g} e^T_i (t_i - s_i); E_{p_hat^T}[b - a] = D/(T Z).
        cross = _cross_sums(s, t, et, mask, scratch, z_t, nonempty)

        kl, binary, p_s, p_t = kl_from_group_sums(z_s, z_t, sh_s, sh_t,
                                                  cross, nonempty,
                                                  temperature)

        ctx.release = release
        if student.requires_grad:
            ctx.buffers = (es, et, scratch, mask)
            ctx.row_stats = (z_s, z_t, p_s, p_t, nonempty)
        else:
            ctx.buffers = None
            if release is not None:
                release(et, scratch, mask)
        ctx.temperature = temperature
        ctx.in_dtype = in_dtype
        p_phi_t, p_psi_t = p_t[:, 0].contiguous(), p_t[:, 1].contiguous()
        p_phi_s = p_s[:, 0].contiguous()
        ctx.mark_non_differentiable(p_phi_t, p_psi_t, p_phi_s)
        return (kl[:, 0].contiguous(), kl[:, 1].contiguous(), binary, p_phi_t,
                p_psi_t, p_phi_s)

    @staticmethod
    def backward(ctx, g_pri: Tensor, g_sec: Tensor, g_bin: Tensor,
                 *unused: Tensor) -> Tuple[Optional[Tensor], ...]:
        if ctx.buffers is None:
            raise RuntimeError(
                'grouped_kl_terms: backward called twice (retain_graph) or on '
                'a student that did not require grad; the fused backward '
                'consumes its buffers')
        es, et, w, mask = ctx.buffers
        z_s, z_t, p_s, p_t, nonempty = ctx.row_stats
        ctx.buffers = ctx.row_stats = None
        temp = ctx.temperature
        g_kl = torch.stack([g_pri, g_sec], dim=1).to(z_s.dtype)
        g_b = g_bin.to(z_s.dtype).unsqueeze(1)
        # d/da_i, i in g: (g_g + g_b (P^S_g - P^T_g)) p_hat^S_i - g_g p_hat^T_i
        # with p_hat^S_i = e^S_i / Z^S_g, p_hat^T_i = e^T_i / Z^T_g, a = z/T.
        zero = torch.zeros((), dtype=z_s.dtype, device=z_s.device)
        c_s = torch.where(nonempty, (g_kl + g_b * (p_s - p_t)) /
                          (z_s * temp), zero)
        c_t = torch.where(nonempty, g_kl / (z_t * temp), zero)
        es.mul_(_group_coefficients(mask, c_s, w))
        if bool((c_t[:, 1] == 0).all()):  # no Secondary-KD: W^T = m c^T_phi
            grad = es.addcmul_(et.mul_(mask), c_t[:, :1], value=-1.0)
        else:
            grad = es.addcmul_(et, _group_coefficients(mask, c_t, w),
                               value=-1.0)
        if ctx.release is not None:
            ctx.release(et, w, mask)
        if grad.dtype != ctx.in_dtype:
            grad = grad.to(ctx.in_dtype)
        return (grad, ) + (None, ) * 10


def grouped_kl_terms(student_logits: Tensor,
                     teacher_logits: Tensor,
                     primary_mask: Tensor,
                     temperature: float = 1.0,
                     *,
                     student_stats: Optional[SoftmaxStats] = None,
                     teacher_stats: Optional[SoftmaxStats] = None,
                     scratch: Optional[Tensor] = None,
                     group_size: Optional[Tensor] = None,
                     student_phi_exp_sum: Optional[Tensor] = None,
                     teacher_phi_exp_sum: Optional[Tensor] = None,
                     release_buffers=None) -> GroupedKLTerms:
    r"""Within-group and binary KL divergences of GKD (eq. 5, 6, 9).

    With :math:`a = z^S / T`, :math:`b = z^T / T` and the groups
    :math:`\Phi` (``primary_mask``) and :math:`\Psi = U \setminus \Phi`:

    .. math::
        \hat{p}_i = \frac{e^{z_i}}{\sum_{l \in \Phi} e^{z_l}}\ (i \in \Phi),
        \quad
        \check{p}_j = \frac{e^{z_j}}{\sum_{l \in \Psi} e^{z_l}}\
        (j \in \Psi), \quad
        p_b = [p_\Phi, p_\Psi],\
        p_\Phi = \frac{\sum_{l \in \Phi} e^{z_l}}{\sum_{l \in U} e^{z_l}}

    (eq. 5, 6) and the identity (eq. 9)

    .. math::
        \mathrm{KL}(p^T \| p^S) = p^T_\Phi\,
        \underbrace{\mathrm{KL}(\hat{p}^T \| \hat{p}^S)}_{\text{Primary-KD}}
        + p^T_\Psi\,
        \underbrace{\mathrm{KL}(\check{p}^T \| \check{p}^S)}
        _{\text{Secondary-KD}}
        + \underbrace{\mathrm{KL}(p_b^T \| p_b^S)}_{\text{Binary-KD}}

    Everything is evaluated in log space (group log-sum-exps). An empty
    group has KL 0 and mass 0. Gradients flow to ``student_logits`` only
    (the teacher is constant); the backward pass is analytic and consumes
    the internal buffers, so it can run once per forward.

    Args:
        student_logits (Tensor): Student logits (B, C).
        teacher_logits (Tensor): Teacher logits (B, C).
        primary_mask (Tensor): Mask (B, C) of :math:`\Phi`, bool or 0/1
            float.
        temperature (float): The temperature :math:`T`. Defaults to 1.0.
        student_stats (SoftmaxStats, optional): :func:`softmax_stats` of the
            student at ``temperature``, shared with the ranking (consumed).
            Defaults to None.
        teacher_stats (SoftmaxStats, optional): Same for the teacher.
            Defaults to None.
        scratch (Tensor, optional): A (B, C) float buffer (consumed).
            Defaults to None.
        group_size (Tensor, optional): :math:`|\Phi|` per row, if known.
            Defaults to None.
        student_phi_exp_sum (Tensor, optional): Exact
            :math:`\sum_{i \in \Phi}` ``student_stats.exp``, if known.
            Defaults to None.
        teacher_phi_exp_sum (Tensor, optional): Same for the teacher.
            Defaults to None.
        release_buffers (callable, optional): Called with the (B, C)
            buffers that are no longer needed (teacher exponentials, scratch,
            mask) once the backward pass (or a no-grad forward) is done.
            Defaults to None.

    Returns:
        GroupedKLTerms: Per-sample terms, without any :math:`T^2` factor.
    """
    if student_logits.shape != teacher_logits.shape \
            or student_logits.shape != primary_mask.shape \
            or student_logits.dim() != 2:
        raise ValueError('student/teacher logits and primary_mask must share '
                         'one (B, C) shape')
    out = _GroupedKLFunction.apply(student_logits, teacher_logits,
                                   primary_mask, float(temperature),
                                   student_stats, teacher_stats, scratch,
                                   group_size, student_phi_exp_sum,
                                   teacher_phi_exp_sum, release_buffers)
    return GroupedKLTerms(*out)

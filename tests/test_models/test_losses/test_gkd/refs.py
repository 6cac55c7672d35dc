"""Independent, slow references for the GKD tests: python-math loops for the
equations, a full sort for eq. 3, a per-row autograd implementation for the
gradients and a literal re-implementation of the authors' batch/fixed
procedures (``docs/papers.md`` §1)."""
import math

import torch

F64 = torch.float64


def lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def hand_terms(s_row, t_row, phi, temperature):
    """Eq. 5, 6 and the three KLs for one sample with python floats."""
    a = [v / temperature for v in s_row]
    b = [v / temperature for v in t_row]
    groups = [sorted(phi), [i for i in range(len(a)) if i not in phi]]
    lse_a, lse_b = lse(a), lse(b)
    kls, p_t, p_s = [], [], []
    for g in groups:
        if not g:
            kls.append(0.0)
            p_t.append(0.0)
            p_s.append(0.0)
            continue
        ga, gb = lse([a[i] for i in g]), lse([b[i] for i in g])
        kls.append(
            sum(
                math.exp(b[i] - gb) * ((b[i] - gb) - (a[i] - ga))
                for i in g))
        p_t.append(math.exp(gb - lse_b))
        p_s.append(math.exp(ga - lse_a))
    binary = sum(q * math.log(q / p) for q, p in zip(p_t, p_s) if q > 0)
    full = sum(
        math.exp(b[i] - lse_b) * ((b[i] - lse_b) - (a[i] - lse_a))
        for i in range(len(a)))
    return dict(primary=kls[0], secondary=kls[1], binary=binary,
                p_phi_t=p_t[0], p_psi_t=p_t[1], full=full)


def slow_terms(student, teacher, mask, temperature):
    """Differentiable per-row implementation (index_select + log_softmax)."""
    out = {'primary': [], 'secondary': [], 'binary': [], 'p_phi_t': []}
    for s_row, t_row, m_row in zip(student, teacher, mask):
        a, b = s_row / temperature, t_row / temperature
        kls, logs_s, logs_t = [], [], []
        for g in (m_row.nonzero().flatten(), (~m_row).nonzero().flatten()):
            if g.numel() == 0:
                kls.append(a.sum() * 0)
                logs_s.append(None)
                logs_t.append(None)
                continue
            la = torch.log_softmax(a[g], 0)
            lb = torch.log_softmax(b[g], 0)
            kls.append((lb.exp() * (lb - la)).sum())
            logs_s.append(torch.logsumexp(a[g], 0) - torch.logsumexp(a, 0))
            logs_t.append(torch.logsumexp(b[g], 0) - torch.logsumexp(b, 0))
        binary = a.sum() * 0
        for ls, lt in zip(logs_s, logs_t):
            if lt is not None:
                binary = binary + lt.exp() * (lt - ls)
        out['primary'].append(kls[0])
        out['secondary'].append(kls[1])
        out['binary'].append(binary)
        p_phi = logs_t[0].exp() if logs_t[0] is not None else a.sum() * 0
        out['p_phi_t'].append(p_phi)
    return {k: torch.stack(v) for k, v in out.items()}


def direct_k(logits, tau, temperature):
    """Eq. 3 by brute force: full sort, cumsum, first argmin."""
    p = torch.softmax(logits / temperature, dim=1)
    cum = p.sort(dim=1, descending=True)[0].cumsum(dim=1)
    return (cum - tau).abs().argmin(dim=1) + 1


def authors_batch_k(logits, tau, step=100):
    """The authors' adaptive loop, literally: sum of the softmax over the
    batch, sorted, first grid index whose prefix sum reaches tau * B."""
    prob = torch.softmax(logits, dim=1).sum(dim=0)
    sorted_prob = prob.sort(descending=True)[0]
    for idx in range(1, sorted_prob.shape[0], step):
        if torch.sum(sorted_prob[:idx], dim=0) >= tau * logits.shape[0]:
            return idx
    return None


def authors_mask(logits, labels, k):
    """Target scattered to a huge score, then the top-k of a full sort."""
    select = logits.scatter(1, labels.unsqueeze(1), 999999.)
    top = select.sort(dim=1, descending=True)[1][:, :k]
    return torch.zeros_like(logits).scatter(1, top, 1).bool()


def authors_loss(student, teacher, hard, temperature, w_bin, w_hard,
                  w_nhard):
    """The authors' three terms (softmax with -1000 masking, sum / B, T^2);
    valid for moderate logits."""
    hard_f, nhard_f = hard.to(student.dtype), (~hard).to(student.dtype)
    batch, temp = student.shape[0], temperature

    def kl_sum(log_p, q):
        return (torch.where(q > 0, q * (q.log() - log_p), 0 * q)).sum()

    ps = torch.softmax(student / temp, 1)
    pt = torch.softmax(teacher / temp, 1)
    bs = torch.stack([(ps * hard_f).sum(1), (ps * nhard_f).sum(1)], 1)
    bt = torch.stack([(pt * hard_f).sum(1), (pt * nhard_f).sum(1)], 1)
    binary = kl_sum(bs.log(), bt) * temp**2 / batch
    hard_kd = kl_sum(
        torch.log_softmax(student / temp - 1000. * nhard_f, 1),
        torch.softmax(teacher / temp - 1000. * nhard_f, 1)) * temp**2 / batch
    nhard_kd = kl_sum(
        torch.log_softmax(student / temp - 1000. * hard_f, 1),
        torch.softmax(teacher / temp - 1000. * hard_f, 1)) * temp**2 / batch
    return w_bin * binary + w_hard * hard_kd + w_nhard * nhard_kd


def make_logits(kind, batch, num_classes, gen, dtype=F64):
    if kind == 'flat':  # freshly initialised: cos ~ N(0, 1/sqrt(512))
        return 64 * torch.randn(batch, num_classes, generator=gen,
                                dtype=dtype) / math.sqrt(512)
    if kind == 'peaked':  # a few dominant classes
        z = 3 * torch.randn(batch, num_classes, generator=gen, dtype=dtype)
        z[:, :3] += 25
        return z
    if kind == 'mixed':  # rows of very different entropies
        z = torch.randn(batch, num_classes, generator=gen, dtype=dtype)
        scales = torch.linspace(0.5, 12, batch, dtype=dtype).unsqueeze(1)
        return z * scales
    raise ValueError(kind)

"""MarginDistillationLoss against a hand computation; center sources
(prototype head file, teacher checkpoint, running buffers)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmfacekd.models.losses import MarginDistillationLoss, load_class_centers
from mmfacekd.registry import MODELS

F64 = torch.float64


def _data(b=6, c=4, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(b, d, generator=gen, dtype=F64),
            torch.randn(b, d, generator=gen, dtype=F64),
            torch.randn(c, d, generator=gen, dtype=F64),
            torch.randint(c, (b, ), generator=gen))


def _unit(v):
    n = math.sqrt(sum(a * a for a in v))
    return [a / n for a in v] if n > 0 else [0.0 for _ in v]


def _hand_md(s, t, w, y, scale, m_min=0.2, m_max=0.5):
    """ArcFace CE over the normalized centers with the per-sample margin
    m_i = m_min + (m_max - m_min) max(c_i, 0) / max_j max(c_j, 0)."""
    s = [_unit(r) for r in s.tolist()]
    t = [_unit(r) for r in t.tolist()]
    w = [_unit(r) for r in w.tolist()]
    y = y.tolist()
    valid = [i for i in range(len(y)) if y[i] >= 0]
    c = {i: max(sum(a * b for a, b in zip(t[i], w[y[i]])), 0.0)
         for i in valid}
    c_max = max(c.values())
    total = 0.0
    for i in valid:
        m = m_min + (m_max - m_min) * c[i] / c_max
        cos = [sum(a * b for a, b in zip(s[i], wc)) for wc in w]
        logits = [scale * v for v in cos]
        logits[y[i]] = scale * math.cos(math.acos(cos[y[i]]) + m)
        mx = max(logits)
        lse = mx + math.log(sum(math.exp(v - mx) for v in logits))
        total += lse - logits[y[i]]
    return total / len(valid)


def _save_head(path, weight):
    # the format of tools/misc/build_prototype_head.py
    torch.save(dict(state_dict=dict(weight=weight),
                    meta=dict(num_classes=weight.size(0))), path)


@pytest.mark.parametrize('grad_mode', ['straight_through', 'exact'])
def test_matches_hand_computation(tmp_path, grad_mode):
    s, t, w, y = _data()
    y[2] = -1  # ignored
    _save_head(tmp_path / 'head.pth', w)
    loss = MODELS.build(dict(type='MarginDistillationLoss',
                             prototype_file=str(tmp_path / 'head.pth'),
                             scale=16.0, grad_mode=grad_mode,
                             loss_weight=0.5))
    loss.centers = loss.centers.double()
    out = loss(s, t, y)
    # the file is stored in float32: compare with the centers as loaded
    ref = _hand_md(s, t, loss.centers, y, 16.0)
    assert out['loss'].item() == pytest.approx(0.5 * ref, rel=1e-9)
    assert 0.2 <= out['margin_mean'].item() <= 0.5
    # centers are stored normalized and outside the state dict
    torch.testing.assert_close(loss.centers, F.normalize(w))
    assert 'centers' not in loss.state_dict()


def test_gradients_exact_gradcheck_and_straight_through(tmp_path):
    s, t, w, y = _data(5, 3, 4, seed=1)
    _save_head(tmp_path / 'head.pth', w)
    exact = MarginDistillationLoss(str(tmp_path / 'head.pth'), scale=8.0,
                                   grad_mode='exact')
    exact.centers = exact.centers.double()
    x = s.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: exact(a, t, y)['loss'], (x, ))
    # straight-through: the margin is a constant offset of the target logit
    st = MarginDistillationLoss(str(tmp_path / 'head.pth'), scale=8.0)
    st.centers = st.centers.double()
    x = s.clone().requires_grad_()
    tt = t.clone().requires_grad_()
    out = st(x, tt, y)
    out['loss'].backward()
    assert tt.grad is None
    x2 = s.clone().requires_grad_()
    cos = F.normalize(x2) @ F.normalize(w).t()
    target = cos.gather(1, y[:, None]).squeeze(1)
    with torch.no_grad():
        c = (F.normalize(t) * F.normalize(w)[y]).sum(1).clamp(min=0)
        m = 0.2 + 0.3 * c / c.max()
        offset = torch.cos(torch.acos(target) + m) - target
    logits = 8.0 * cos.scatter(1, y[:, None], (target + offset)[:, None])
    ref = F.cross_entropy(logits, y)
    torch.testing.assert_close(out['loss'], ref)
    ref.backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_teacher_checkpoint_head_and_errors(tmp_path):
    _, _, w, _ = _data(c=5, d=3)
    torch.save(dict(state_dict={'backbone.fc.weight': torch.zeros(3, 3),
                                'head.weight': w}), tmp_path / 'teacher.pth')
    torch.testing.assert_close(load_class_centers(str(tmp_path /
                                                      'teacher.pth')),
                               F.normalize(w).float())
    with pytest.raises(KeyError, match='prototype_key'):
        load_class_centers(str(tmp_path / 'teacher.pth'), 'nope')
    with pytest.raises(ValueError, match='num_classes'):
        MarginDistillationLoss(str(tmp_path / 'teacher.pth'), num_classes=7)
    with pytest.raises(ValueError, match='embed_dim'):
        MarginDistillationLoss()
    loss = MarginDistillationLoss(str(tmp_path / 'teacher.pth'))
    with pytest.raises(ValueError, match='must'):
        loss(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match='num_classes'):
        loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 5]))


def test_running_centers_are_teacher_prototypes(tmp_path):
    s, t, _, y = _data(8, 3, 4, seed=2)
    y = torch.tensor([0, 1, 0, 1, 0, 2, 2, 1])
    loss = MODELS.build(dict(type='MarginDistillationLoss', num_classes=4,
                             embed_dim=4, scale=16.0))
    loss.double()
    out = loss(s[:4], t[:4], y[:4])  # training mode: centers updated first
    assert out['num_centers'].item() == 2
    loss(s[4:], t[4:], y[4:])
    t_hat = F.normalize(t)
    for c in range(3):
        proto = F.normalize(t_hat[y == c].sum(0), dim=0)
        torch.testing.assert_close(loss.class_centers()[c], proto)
    assert not loss.class_centers()[3].any()  # unseen class: zero center
    assert loss.center_counts.tolist() == [3, 3, 2, 0]
    # the loss uses the updated centers; eval mode freezes them
    loss.eval()
    before = loss.center_sums.clone()
    out = loss(s, t, y)
    assert torch.equal(loss.center_sums, before)
    w = loss.class_centers()
    ref = _hand_md(s, t, w, y, 16.0)
    assert out['loss'].item() == pytest.approx(ref, rel=1e-9)
    state = loss.state_dict()
    assert set(state) == {'center_sums', 'center_counts'}


# ------------------------- the distiller skips the unused student head
class _WeightUses(torch.overrides.TorchFunctionMode):
    """Counts the torch calls that read ``weight`` (whatever path a head
    takes to it: ``forward``, ``get_logits``, a direct ``F.linear``)."""

    def __init__(self, weight):
        super().__init__()
        self.weight, self.count = weight, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if any(a is self.weight for a in list(args) + list(kwargs.values())):
            self.count += 1
        return func(*args, **kwargs)


def _md_distiller(tiny_distiller, tmp_path, student_loss_weight):
    gen = torch.Generator().manual_seed(3)
    centers = tmp_path / 'centers.pth'
    _save_head(centers, torch.randn(4, 16, generator=gen))
    return tiny_distiller(
        student_loss_weight=student_loss_weight,
        distill_losses=dict(md=dict(
            type='MarginDistillationLoss', prototype_file=str(centers),
            scale=16.0, gather=False,
            inputs=dict(student_embedding='student.embedding',
                        teacher_embedding='teacher.embedding',
                        gt_label='gt_label'))))


def _batch():
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(4)
    return (torch.randn(4, 3, 32, 32, generator=gen),
            [DataSample().set_gt_label(i % 4) for i in range(4)])


def test_weight_zero_skips_student_head_loss_unchanged(
        tiny_distiller, trainable_optimizer, tmp_path):
    x, samples = _batch()
    uses = {}
    for w in (0.0, 1.0):
        model = _md_distiller(tiny_distiller, tmp_path, w)
        with _WeightUses(model.student.head.weight) as counter:
            losses = model.loss(x, samples)
        uses[w] = counter.count
        if w:
            continue
        assert not any(k.startswith('student.') for k in losses)
        # the loss of the student embedding and the teacher embedding,
        # computed directly, without the distiller
        gt = torch.arange(4) % 4
        ref = model.distill_losses['md'](model.student.extract_feat(x),
                                         model.teacher.extract_feat(x), gt)
        torch.testing.assert_close(losses['distill.loss_md'], ref['loss'])
        total, _ = model.parse_losses(losses)
        torch.testing.assert_close(total, ref['loss'])
        # the head is frozen: not in the optimizer, no gradient
        assert not any(p.requires_grad
                       for p in model.student.head.parameters())
        _, in_opt = trainable_optimizer(model)
        assert id(model.student.head.weight) not in in_opt
        assert {id(p) for p in model.student.backbone.parameters()} <= in_opt
    # the head's weight is read only when its loss counts (the counter
    # sees the C-way product when the head runs)
    assert uses[0.0] == 0 and uses[1.0] > 0


def test_weight_zero_head_kept_when_a_loss_reads_student_logits(
        tiny_distiller):
    model = tiny_distiller(
        student_loss_weight=0.0,
        distill_losses=dict(kd=dict(
            type='KDLoss', inputs=dict(student_logits='student.logits',
                                       teacher_logits='teacher.logits'))))
    assert model.run_student_head
    assert all(p.requires_grad for p in model.student.head.parameters())
    losses = model.loss(*_batch())
    assert losses['student.loss_cls'].item() == 0


def test_weight_zero_runs_under_ddp(tiny_distiller, tmp_path):
    """Two DDP steps with ``find_unused_parameters=False`` (as the configs):
    an unused but trainable head would fail the second step ("Expected to
    have finished reduction in the prior iteration"). One gloo rank in this
    process is enough for DDP's unused-parameter check."""
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    if dist.is_initialized():
        pytest.skip('a process group is already initialized')
    model = _md_distiller(tiny_distiller, tmp_path, 0.0)
    before = {k: v.detach().clone()
              for k, v in model.student.backbone.named_parameters()}
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/pg',
                            rank=0, world_size=1)
    try:
        ddp = MMDistributedDataParallel(model, find_unused_parameters=False)
        opt = torch.optim.SGD(
            [p for p in ddp.parameters() if p.requires_grad], lr=0.1)
        x, samples = _batch()
        for _ in range(2):  # through DDP's forward (its reducer)
            total, _ = model.parse_losses(ddp(x, samples, mode='loss'))
            opt.zero_grad()
            total.backward()
            opt.step()
    finally:
        dist.destroy_process_group()
    assert any(not torch.equal(v, before[k])
               for k, v in model.student.backbone.named_parameters())

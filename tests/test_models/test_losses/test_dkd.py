"""DKDLoss against a hand computation and the KD decomposition."""
import math

import pytest
import torch
from mmengine.hooks import Hook

import mmfacekd.models.losses  # noqa: F401  (registers the losses)
from mmfacekd.models.losses import DKDLoss, KDLoss, dkd_terms
from mmfacekd.registry import MODELS

pytestmark = pytest.mark.usefixtures('single_thread')


def _softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def _hand_terms(student, teacher, labels, temperature):
    """Per-sample TCKD, NCKD and p_t^T from probabilities, with loops."""
    out = []
    for s_row, t_row, y in zip(student.tolist(), teacher.tolist(),
                               labels.tolist()):
        ps = _softmax([v / temperature for v in s_row])
        pt = _softmax([v / temperature for v in t_row])
        bs, bt = [ps[y], 1 - ps[y]], [pt[y], 1 - pt[y]]
        tckd = sum(q * math.log(q / p) for q, p in zip(bt, bs))
        nckd = 0.0
        for i in range(len(ps)):
            if i == y:
                continue
            q_hat, p_hat = pt[i] / (1 - pt[y]), ps[i] / (1 - ps[y])
            nckd += q_hat * math.log(q_hat / p_hat)
        out.append((tckd, nckd, pt[y]))
    return out


@pytest.mark.parametrize('temperature', [1.0, 4.0])
def test_dkd_matches_hand_computation(temperature):
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(6, 10, generator=gen, dtype=torch.float64) * 2
    teacher = torch.randn(6, 10, generator=gen, dtype=torch.float64) * 2
    labels = torch.randint(10, (6, ), generator=gen)
    hand = _hand_terms(student, teacher, labels, temperature)
    tckd, nckd, p_t = dkd_terms(student, teacher, labels, temperature)
    for i, (h_t, h_n, h_p) in enumerate(hand):
        assert tckd[i].item() == pytest.approx(h_t, rel=1e-9, abs=1e-12)
        assert nckd[i].item() == pytest.approx(h_n, rel=1e-9, abs=1e-12)
        assert p_t[i].item() == pytest.approx(h_p, rel=1e-12)
    loss = MODELS.build(
        dict(type='DKDLoss', alpha=0.5, beta=3.0, temperature=temperature,
             loss_weight=2.0))
    expected = 2.0 * temperature**2 * sum(0.5 * t + 3.0 * n
                                          for t, n, _ in hand) / len(hand)
    assert loss(student, teacher, labels).item() == pytest.approx(
        expected, rel=1e-9)


@pytest.mark.parametrize('temperature', [1.0, 4.0])
def test_dkd_relation_to_kd(temperature):
    """DKD paper eq. 4: KD = TCKD + (1 - p_t^T) NCKD, per sample; hence
    DKD(alpha=beta=1) - KD = mean(p_t^T NCKD) T^2 >= 0."""
    gen = torch.Generator().manual_seed(1)
    student = torch.randn(7, 13, generator=gen, dtype=torch.float64) * 3
    teacher = torch.randn(7, 13, generator=gen, dtype=torch.float64) * 3
    labels = torch.randint(13, (7, ), generator=gen)
    tckd, nckd, p_t = dkd_terms(student, teacher, labels, temperature)
    kd = KDLoss(temperature=temperature)
    for i in range(7):
        kd_i = kd(student[i:i + 1], teacher[i:i + 1]) / temperature**2
        assert kd_i.item() == pytest.approx(
            (tckd[i] + (1 - p_t[i]) * nckd[i]).item(), rel=1e-9)
    dkd11 = DKDLoss(alpha=1.0, beta=1.0, temperature=temperature)
    gap = dkd11(student, teacher, labels) - kd(student, teacher)
    assert gap.item() == pytest.approx(
        (p_t * nckd).mean().item() * temperature**2, rel=1e-9)
    assert gap.item() >= 0


def test_dkd_gradient_and_large_logits():
    gen = torch.Generator().manual_seed(2)
    student = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    teacher = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 5, 2])
    loss = DKDLoss(temperature=2.0)
    assert torch.autograd.gradcheck(
        lambda s: loss(s, teacher, labels), (student.requires_grad_(True), ))

    # s=64 margin logits with an overwhelming target: 1 - p_t underflows in
    # probability space but not in log space.
    cos = torch.rand(4, 500, generator=gen) * 0.2 - 0.1
    labels = torch.tensor([1, 7, 100, 499])
    cos[torch.arange(4), labels] = 1.0
    student = (64 * cos).requires_grad_(True)
    teacher = 64 * cos.flip(1)
    teacher[torch.arange(4), labels] = 64.0
    for temp in (1.0, 4.0):
        value = DKDLoss(temperature=temp)(student, teacher, labels)
        value.backward()
        assert torch.isfinite(value)
        assert torch.isfinite(student.grad).all()
        student.grad = None


# ------------------------------------------------- the DKD warm-up ramp
class _Faces(torch.utils.data.Dataset):
    """8 uint8 3x32x32 faces of 4 identities."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.imgs = torch.randint(0, 256, (8, 3, 32, 32), generator=gen,
                                  dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.imgs)

    def __getitem__(self, i):
        from mmpretrain.structures import DataSample
        return dict(inputs=self.imgs[i],
                    data_samples=DataSample().set_gt_label(i % 4))


class _RampProbe(Hook):
    """After each iteration: the logged scale and DKD term, and the DKD
    term of the same batch recomputed at scale 1 (lr = 0 keeps the
    weights; train-mode BatchNorm uses batch statistics)."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.rows = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        model = runner.model
        scale = model.distill_weight_scale
        model.distill_weight_scale = 1.0
        with torch.no_grad():
            data = model.data_preprocessor(data_batch, True)
            ref = model(**data, mode='loss')['distill.loss_dkd']
        model.distill_weight_scale = scale
        logged = {k: float(torch.as_tensor(outputs[k]).detach())
                  for k in ('distill.weight_scale', 'distill.loss_dkd')}
        self.rows.append((runner.epoch, runner.iter,
                          logged['distill.weight_scale'],
                          logged['distill.loss_dkd'], float(ref)))


@pytest.mark.parametrize('by_epoch,warmup', [(True, 2), (False, 4)])
def test_dkd_warmup_ramp_in_a_runner(tmp_path, tiny_recognizer, by_epoch,
                                     warmup):
    """The DKD configs' ramp (``_base_/losses/dkd.py``: DistillWarmupHook,
    epochs counted from 1) in a real Runner: the DKD term of iteration i of
    epoch e is min((e + 1) / W, 1) (per epoch) or min((i + 1) / W, 1) (per
    iteration) times the unramped term."""
    import uuid

    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.runner import Runner

    from conftest import ROOT
    base = Config.fromfile(f'{ROOT}/configs/_base_/losses/dkd.py')
    hook = dict(base.dkd_warmup, warmup_epochs=warmup, by_epoch=by_epoch)
    probe = _RampProbe()
    torch.manual_seed(0)
    runner = Runner(
        model=dict(type='FaceDistiller', student=tiny_recognizer('mbf'),
                   teacher=tiny_recognizer('r18'), teacher_ckpt=None,
                   distill_losses=dict(dkd=base.dkd_loss)),
        work_dir=str(tmp_path), experiment_name=uuid.uuid4().hex[:8],
        train_dataloader=torch.utils.data.DataLoader(
            _Faces(), batch_size=4, collate_fn=pseudo_collate),
        train_cfg=dict(by_epoch=True, max_epochs=3),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.0),
            constructor='TrainableParamsOptimWrapperConstructor'),
        default_hooks=dict(checkpoint=None,
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[hook, probe], default_scope='mmfacekd')
    runner.train()
    assert len(probe.rows) == 6
    for epoch, it, scale, value, ref in probe.rows:
        step = epoch if by_epoch else it
        expected = min((step + 1) / warmup, 1.0)  # the DKD authors' formula
        assert scale == pytest.approx(expected)
        assert value == pytest.approx(expected * ref, rel=1e-5)
        assert ref > 0
    if by_epoch:
        assert [r[2] for r in probe.rows] == [0.5, 0.5, 1, 1, 1, 1]
    else:
        assert [r[2] for r in probe.rows] == [0.25, 0.5, 0.75, 1, 1, 1]

"""FitNetLoss and ShrinkTeaNetLoss against hand computations; a FitNet hint
on recorded feature maps through a 1x1-conv connector in the distiller."""
import math

import pytest
import torch
from mmpretrain.structures import DataSample

from mmfacekd.models.losses import FitNetLoss, ShrinkTeaNetLoss
from mmfacekd.registry import MODELS

F64 = torch.float64


def _feats(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen, dtype=F64),
            torch.randn(*shape, generator=gen, dtype=F64))


def _flat_rows(x, normalize):
    rows = [list(map(float, r)) for r in x.flatten(1).tolist()]
    if normalize:
        rows = [[a / math.sqrt(sum(b * b for b in r)) for a in r]
                for r in rows]
    return rows


@pytest.mark.parametrize('normalize', [False, True])
@pytest.mark.parametrize('reduction', ['mean', 'batchmean'])
@pytest.mark.parametrize('shape', [(4, 6), (3, 2, 3, 3)])
def test_fitnet_matches_hand_computation(normalize, reduction, shape):
    s, t = _feats(shape, seed=len(shape))
    loss = MODELS.build(dict(type='FitNetLoss', normalize=normalize,
                             reduction=reduction, loss_weight=0.3))
    rs, rt = _flat_rows(s, normalize), _flat_rows(t, normalize)
    total = sum((a - b)**2 for u, v in zip(rs, rt) for a, b in zip(u, v))
    denom = len(rs) * len(rs[0]) if reduction == 'mean' else len(rs)
    assert loss(s, t).item() == pytest.approx(0.3 * total / denom, rel=1e-10)


def test_fitnet_zero_gradcheck_detached_and_shape_check():
    s, t = _feats((3, 5), seed=1)
    assert FitNetLoss()(t, t.clone()).item() == 0
    # normalized: only the direction matters
    assert FitNetLoss(normalize=True)(2 * t, t).abs().item() < 1e-12
    x = s.clone().requires_grad_()
    tt = t.clone().requires_grad_()
    for loss in (FitNetLoss(), FitNetLoss(normalize=True,
                                          reduction='batchmean')):
        assert torch.autograd.gradcheck(lambda a: loss(a, t), (x, ))
        loss(x, tt).backward()
    assert tt.grad is None
    with pytest.raises(ValueError, match='connector'):
        FitNetLoss()(s, t[:, :4])


def test_shrinkteanet_matches_hand_computation():
    s, t = _feats((4, 2, 3), seed=2)
    loss = MODELS.build(dict(type='ShrinkTeaNetLoss', loss_weight=2.0))
    rs, rt = _flat_rows(s, True), _flat_rows(t, True)
    ref = sum(1 - sum(a * b for a, b in zip(u, v))
              for u, v in zip(rs, rt)) / len(rs)
    assert loss(s, t).item() == pytest.approx(2 * ref, rel=1e-10)
    # identical directions give 0, opposite ones 2
    assert ShrinkTeaNetLoss()(3 * t, t).abs().item() < 1e-12
    assert ShrinkTeaNetLoss()(-t, t).item() == pytest.approx(2.0)
    x = s.clone().requires_grad_()
    tt = t.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: ShrinkTeaNetLoss()(a, t), (x, ))
    ShrinkTeaNetLoss()(x, tt).backward()
    assert tt.grad is None


def test_fitnet_hint_on_recorded_maps_through_conv_connector(
        tiny_recognizer):
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='FaceDistiller', student=tiny_recognizer('mbf'),
        teacher=tiny_recognizer('r18'), teacher_ckpt=None,
        # student (B, 32, 2, 2) -> 1x1 conv -> teacher layer4 (B, 64, 2, 2)
        recorders=dict(s_map=dict(source='student.backbone.conv_sep'),
                       t_map=dict(source='teacher.backbone.layer4')),
        connectors=dict(hint=dict(type='ProjectionConnector',
                                  input='recorder.s_map', in_channels=32,
                                  out_channels=64, spatial=True)),
        distill_losses=dict(fitnet=dict(
            type='FitNetLoss',
            inputs=dict(student_feat='connector.hint',
                        teacher_feat='recorder.t_map')))))
    model.train()
    x = torch.randn(4, 3, 32, 32)
    samples = [DataSample().set_gt_label(i % 4) for i in range(4)]
    with model.recorders:  # recording happens only inside this block
        _, values = model.network_outputs(x, samples)
    s_map, t_map = values['recorder.s_map'], values['recorder.t_map']
    losses = model.loss(x, samples)
    value = losses['distill.loss_fitnet']
    assert t_map.shape == (4, 64, 2, 2)
    ref = (model.connectors['hint'](s_map) - t_map).pow(2).mean()
    torch.testing.assert_close(value, ref)
    value.backward()
    conv = model.connectors['hint'].proj[0]
    assert isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (1, 1)
    assert conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())

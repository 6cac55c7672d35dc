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


# ------------------------------------------- the paper's intermediate hint
def _hint_parts():
    """``recorders``/``connectors``/``fitnet_hint_loss`` of the FitNet base
    loss config, as the hint configs use them."""
    from mmengine.config import Config

    from conftest import ROOT
    cfg = Config.fromfile(f'{ROOT}/configs/_base_/losses/fitnet.py')
    return (cfg.fitnet_hint_recorders, cfg.fitnet_hint_connectors,
            cfg.fitnet_hint_loss)


def test_intermediate_hint_matches_hand_regressor_and_mse(
        tiny_distiller, trainable_optimizer):
    recorders, connectors, hint_loss = _hint_parts()
    # tiny nets: student layers.3 is (B, 64, 8, 8), teacher layer2
    # (B, 16, 8, 8) at 32x32
    connectors.fitnet_regressor.update(in_channels=64, out_channels=16)
    model = tiny_distiller(recorders=recorders, connectors=connectors,
                           distill_losses=dict(fitnet=hint_loss))
    # own hooks on the two stages, independent of the distiller's recorders
    seen = {}
    hooks = [m.register_forward_hook(
        lambda mod, i, o, k=k: seen.__setitem__(k, o.detach().clone()))
        for k, m in (('s', model.student.backbone.layers[3]),
                     ('t', model.teacher.backbone.layer2))]
    x = torch.randn(4, 3, 32, 32)
    samples = [DataSample().set_gt_label(i % 4) for i in range(4)]
    losses = model.loss(x, samples)
    for h in hooks:
        h.remove()
    assert seen['s'].shape == (4, 64, 8, 8)
    assert seen['t'].shape == (4, 16, 8, 8)
    conv = model.connectors['fitnet_regressor'].proj[0]
    w, b = conv.weight.detach()[:, :, 0, 0], conv.bias.detach()
    # the regressor by hand: r(v)[n, o, h, w] = sum_c W[o, c] v[n, c, h, w]
    # + b[o]; then the mean of the squared differences over every element
    reg = torch.einsum('oc,nchw->nohw', w, seen['s']) \
        + b.view(1, -1, 1, 1)
    diff = [(a - c)**2 for a, c in zip(reg.flatten().tolist(),
                                       seen['t'].flatten().tolist())]
    value = losses['distill.loss_fitnet']
    assert value.item() == pytest.approx(sum(diff) / len(diff), rel=1e-5)

    # the regressor is trained: gradients, in the optimizer, moved by a step
    wrapper, in_opt = trainable_optimizer(model)
    reg_params = list(model.connectors['fitnet_regressor'].parameters())
    assert {id(p) for p in reg_params} <= in_opt
    assert not {id(p) for p in model.teacher.parameters()} & in_opt
    before = conv.weight.detach().clone()
    wrapper.backward(value)
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in reg_params)
    wrapper.step()
    assert not torch.equal(conv.weight, before)
    assert all(p.grad is None for p in model.teacher.parameters())


def test_r50_hint_config_maps_agree(tmp_path):
    """The MS1MV2 hint config's recorder sources and regressor channels fit
    IResNet-50 and MobileFaceNet at 112x112 (heads shrunk)."""
    from mmengine.config import Config

    from conftest import ROOT
    cfg = Config.fromfile(
        f'{ROOT}/configs/fitnet/fitnet_hint_r50_mbf.py').model
    cfg.teacher_ckpt = None
    cfg.teacher.backbone.zero_init_residual = True
    cfg.student.head.num_classes = cfg.teacher.head.num_classes = 4
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.train()
    shapes = {}
    hooks = [rec.module.register_forward_hook(
        lambda mod, i, o, k=k: shapes.__setitem__(k, tuple(o.shape)))
        for k, rec in model.recorders.items()]
    x = torch.randn(2, 3, 112, 112)
    losses = model.loss(x, [DataSample().set_gt_label(i) for i in range(2)])
    for h in hooks:
        h.remove()
    assert shapes == dict(fitnet_guided=(2, 128, 28, 28),
                          fitnet_hint=(2, 128, 28, 28))
    assert torch.isfinite(losses['distill.loss_fitnet'])
    assert losses['distill.loss_fitnet'].requires_grad

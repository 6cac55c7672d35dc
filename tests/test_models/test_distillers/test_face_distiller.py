"""FaceDistiller wiring: frozen teacher, strict loading, input validation,
recorders (active in loss() only), per-sample classification flags, teacher
evaluation, loss namespacing, state dict and optimizer contents."""
import gc
import weakref

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper
from mmpretrain.structures import DataSample

from mmfacekd.registry import MODELS

NUM_CLASSES = 6


def recognizer(depth_or_mbf='r18'):
    if depth_or_mbf == 'r18':
        backbone = dict(type='IResNet', depth=18, base_channels=8,
                        input_size=32, num_features=16)
    else:
        backbone = dict(type='MobileFaceNet', input_size=32, num_features=16,
                        blocks=(1, 1, 1, 1), scale=1,
                        expansion=(16, 32, 64), conv_sep_channels=32)
    return dict(type='FaceRecognizer', backbone=backbone,
                head=dict(type='ArcFaceHead', num_classes=NUM_CLASSES,
                          in_channels=16, s=16.0, m=0.2))


@pytest.fixture
def teacher_ckpt(tmp_path):
    torch.manual_seed(0)
    teacher = MODELS.build(recognizer('r18'))
    path = tmp_path / 'teacher.pth'
    torch.save(dict(state_dict=teacher.state_dict()), path)
    return str(path), teacher


def distiller(ckpt, **kwargs):
    cfg = dict(
        type='FaceDistiller', student=recognizer('mbf'),
        teacher=recognizer('r18'), teacher_ckpt=ckpt,
        distill_losses=dict(
            kd=dict(type='KDLoss', temperature=4.0,
                    inputs=dict(student_logits='student.logits',
                                teacher_logits='teacher.logits'))))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def batch(n=4):
    x = torch.randn(n, 3, 32, 32)
    samples = [DataSample().set_gt_label(i % NUM_CLASSES) for i in range(n)]
    return x, samples


def test_teacher_loaded_frozen_eval_and_excluded(teacher_ckpt):
    path, ref_teacher = teacher_ckpt
    model = distiller(path)
    for k, v in ref_teacher.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[k], v)
    model.train()
    assert not model.teacher.training and model.student.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    x, samples = batch()
    losses = model.loss(x, samples)
    assert {'student.loss_cls', 'student.accuracy', 'distill.loss_kd'} <= \
        set(losses)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert any(p.grad is not None for p in model.student.parameters())
    # BN running stats of the teacher do not move (eval mode)
    assert torch.equal(model.teacher.backbone.bn1.running_mean,
                       ref_teacher.backbone.bn1.running_mean)
    # not in the checkpoint, and a fresh distiller loads it strictly
    state = model.state_dict()
    assert not any(k.startswith('teacher.') for k in state)
    assert any(k.startswith('student.') for k in state)
    distiller(path).load_state_dict(state, strict=True)
    # not in the optimizer
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper',
        constructor='TrainableParamsOptimWrapperConstructor',
        optimizer=dict(type='SGD', lr=0.1)))
    in_opt = {
        id(p)
        for g in wrapper.optimizer.param_groups for p in g['params']
    }
    assert not in_opt & {id(p) for p in model.teacher.parameters()}
    assert {
        id(p)
        for p in model.student.parameters() if p.requires_grad
    } <= in_opt


def test_kd_value_uses_teacher_logits(teacher_ckpt):
    path, ref_teacher = teacher_ckpt
    model = distiller(path).eval()  # eval: deterministic BN for the student
    x, samples = batch()
    losses = model.loss(x, samples)
    with torch.no_grad():
        t = ref_teacher.eval().head.get_logits(
            ref_teacher.extract_feat(x))['logits']
        s = model.student.head.get_logits(
            model.student.extract_feat(x))['logits']
    expected = nn.functional.kl_div(
        torch.log_softmax(s / 4, 1), torch.softmax(t / 4, 1),
        reduction='batchmean') * 16
    assert torch.allclose(losses['distill.loss_kd'], expected, rtol=1e-4)


def test_strict_load_errors_and_revise_keys(teacher_ckpt, tmp_path):
    path, ref_teacher = teacher_ckpt
    state = ref_teacher.state_dict()
    partial = {k: v for k, v in state.items() if not k.startswith('head.')}
    torch.save(partial, tmp_path / 'nohead.pth')
    with pytest.raises(RuntimeError,
                       match=r"missing keys \(1\): \['head.weight'\]"):
        distiller(str(tmp_path / 'nohead.pth'))
    # a raw insightface-style backbone.pth: no prefix, no head
    raw = {k[len('backbone.'):]: v for k, v in state.items()
           if k.startswith('backbone.')}
    torch.save(raw, tmp_path / 'backbone.pth')
    with pytest.raises(RuntimeError, match='unexpected keys'):
        distiller(str(tmp_path / 'backbone.pth'), distill_losses=dict())
    teacher_cfg = recognizer('r18')
    teacher_cfg['head'] = None
    model = distiller(str(tmp_path / 'backbone.pth'), teacher=teacher_cfg,
                      teacher_revise_keys=[(r'^', 'backbone.')],
                      distill_losses=dict(fit=dict(
                          type='KDLoss',
                          inputs=dict(student_logits='student.embedding',
                                      teacher_logits='teacher.embedding'))))
    assert torch.equal(model.teacher.backbone.fc.weight,
                       ref_teacher.backbone.fc.weight)


def test_input_validation_lists_available(teacher_ckpt):
    path, _ = teacher_ckpt
    with pytest.raises(KeyError, match="not available; available inputs: "
                       r"\['student.embedding'"):
        distiller(path, distill_losses=dict(kd=dict(
            type='KDLoss', inputs=dict(student_logits='student.logitz',
                                       teacher_logits='teacher.logits'))))
    with pytest.raises(KeyError,
                       match=r"arguments \['teacher_logits'\] have no input"):
        distiller(path, distill_losses=dict(kd=dict(
            type='KDLoss', inputs=dict(student_logits='student.logits'))))
    with pytest.raises(KeyError, match="names argument 'logits'"):
        distiller(path, distill_losses=dict(kd=dict(
            type='KDLoss', inputs=dict(logits='student.logits',
                                       teacher_logits='teacher.logits'))))
    teacher_cfg = recognizer('r18')
    teacher_cfg['head'] = None
    with pytest.raises(KeyError, match='teacher.logits'):
        MODELS.build(dict(
            type='FaceDistiller', student=recognizer('mbf'),
            teacher=teacher_cfg, distill_losses=dict(kd=dict(
                type='KDLoss', inputs=dict(student_logits='student.logits',
                                           teacher_logits='teacher.logits')))))


def test_recorder_survives_inplace_residual(teacher_ckpt):
    path, ref_teacher = teacher_ckpt
    model = distiller(path, recorders=dict(
        t_bn3=dict(source='teacher.backbone.layer1.0.bn3'),
        s_stage=dict(source='student.backbone.layers.3')))
    x, samples = batch()
    with model.recorders:
        _, values = model.network_outputs(x, samples)
    recorded = values['recorder.t_bn3']
    # recompute bn3's output of the first block by hand: it must not include
    # the residual that IBasicBlock adds in place afterwards
    bb = ref_teacher.eval().backbone
    with torch.no_grad():
        h = bb.prelu(bb.bn1(bb.conv1(x)))
        blk = bb.layer1[0]
        expected = blk.bn3(
            blk.conv2(blk.prelu(blk.bn2(blk.conv1(blk.bn1(h))))))
    assert torch.allclose(recorded, expected, atol=1e-5)
    assert values['recorder.s_stage'].requires_grad
    with pytest.raises(KeyError, match='no module named'):
        distiller(path,
                  recorders=dict(bad=dict(source='student.backbone.nope')))


class _Spy(nn.Module):
    """A distill loss that keeps a weak reference to what it was given."""

    def __init__(self):
        super().__init__()
        self.refs = []

    def forward(self, feat):
        self.refs.append(weakref.ref(feat))
        return feat.pow(2).mean()


def _hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_recorders_active_only_inside_loss(teacher_ckpt):
    path, _ = teacher_ckpt
    model = distiller(path, recorders=dict(
        t1=dict(source='teacher.backbone.layer1'),
        s3=dict(source='student.backbone.layers.3')),
        distill_losses=dict(spy=dict(type=_Spy, inputs=dict(
            feat='recorder.s3'))))
    recs = model.recorders
    assert _hooks(model) == 0 and not recs.active
    x, samples = batch()
    calls = []

    def counting(orig):
        def hook(*args):
            calls.append(1)
            orig(*args)
        return hook

    for name in recs:
        recs[name]._hook = counting(recs[name]._hook)
    losses = model.loss(x, samples)
    assert len(calls) == 2  # each recorded module ran once, inside loss()
    # after loss(): no hook, nothing held by the recorders
    assert _hooks(model) == 0 and not recs.active
    assert all(recs[n].data is None for n in recs)
    # the recorded tensor lives only as long as the losses' graph
    ref = model.distill_losses.spy.refs[-1]
    assert ref() is not None
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    del losses
    gc.collect()
    assert ref() is None
    # predict / tensor modes record nothing and clone nothing
    model.eval()
    model.predict(x, [DataSample() for _ in range(4)])
    model(x, mode='tensor')
    assert len(calls) == 2 and all(recs[n].data is None for n in recs)
    # an exception inside the block still removes the hooks
    with pytest.raises(ZeroDivisionError):
        with recs:
            assert _hooks(model) == 2
            1 / 0
    assert _hooks(model) == 0 and not recs.active
    with recs, pytest.raises(RuntimeError, match='do not nest'):
        with recs:
            pass


def _hand_cls(model, x, samples, flags):
    """CE of the student's margin logits and accuracy over flagged rows."""
    head = model.student.head
    gt = torch.tensor([s.gt_label.item() for s in samples])
    with torch.no_grad():
        cos = F.linear(F.normalize(model.student.extract_feat(x)),
                       F.normalize(head.weight))
    rows = [i for i, f in enumerate(flags) if f]
    ce, correct = [], []
    for i in rows:
        logit = head.s * cos[i].clone()
        y = gt[i].item()
        theta = torch.acos(cos[i, y].clamp(-1 + 1e-7, 1 - 1e-7))
        logit[y] = head.s * torch.cos(theta + head.m2)
        ce.append(-torch.log_softmax(logit, 0)[y])
        correct.append(float((head.s * cos[i]).argmax().item() == y))
    return torch.stack(ce).mean(), torch.tensor(sum(correct) / len(rows))


def test_cls_loss_on_flagged_samples_only(teacher_ckpt):
    path, _ = teacher_ckpt
    model = distiller(path).eval()  # eval: per-sample BN, batch-independent
    x, samples = batch(6)
    flags = [True, False, True, False, False, True]
    for s, f in zip(samples, flags):
        s.set_metainfo(dict(with_cls_loss=f))
    losses = model.loss(x, samples)
    loss, acc = _hand_cls(model, x, samples, flags)
    torch.testing.assert_close(losses['student.loss_cls'], loss)
    torch.testing.assert_close(losses['student.accuracy'], acc)
    # distillation still sees the whole batch (KD over all 6 samples)
    with torch.no_grad():
        t = model.teacher.get_logits(model.teacher.extract_feat(x))['logits']
        s = model.student.get_logits(model.student.extract_feat(x))['logits']
    kd = F.kl_div(torch.log_softmax(s / 4, 1), torch.softmax(t / 4, 1),
                  reduction='batchmean') * 16
    torch.testing.assert_close(losses['distill.loss_kd'], kd, rtol=1e-4,
                               atol=1e-6)
    # the same flags through FaceRecognizer.loss: the same shared method
    torch.testing.assert_close(
        model.student.loss(x, samples)['loss_cls'], loss)
    # no flag == all flagged
    plain = model.loss(x, batch(6)[1])
    all_loss, _ = _hand_cls(model, x, samples, [True] * 6)
    torch.testing.assert_close(plain['student.loss_cls'], all_loss)


def test_removed_student_cls_samples_names_the_flag(teacher_ckpt):
    path, _ = teacher_ckpt
    with pytest.raises(ValueError, match="cls_loss_on='random_part'"):
        distiller(path, student_cls_samples=2)


def test_predict_teacher_flag_and_removed_eval_teacher(teacher_ckpt):
    path, _ = teacher_ckpt
    with pytest.raises(ValueError, match="type='TeacherEvalHook'"):
        distiller(path, eval_teacher=True)
    model = distiller(path).eval()
    x, samples = batch()
    out = model.predict(x, samples)
    assert out[0].pred_embedding.shape == (16, )
    assert 'teacher_embedding' not in out[0]
    model.predict_teacher = True  # what TeacherEvalHook sets
    out = model.predict(x, [DataSample() for _ in range(4)])
    emb, xnorm = model.teacher.embed(x)
    torch.testing.assert_close(out[1].teacher_embedding, emb[1])
    torch.testing.assert_close(out[1].teacher_xnorm, xnorm[1])


def test_connector_is_trainable_and_saved(teacher_ckpt):
    path, _ = teacher_ckpt
    model = distiller(
        path, recorders=dict(s4=dict(source='student.backbone.layers.4')),
        connectors=dict(proj=dict(type='ProjectionConnector', in_channels=128,
                                  out_channels=64, spatial=True,
                                  input='recorder.s4')),
        distill_losses=dict(kd=dict(
            type='KDLoss', inputs=dict(student_logits='student.logits',
                                       teacher_logits='teacher.logits'))))
    x, samples = batch()
    model.loss(x, samples)
    assert any(k.startswith('connectors.proj.') for k in model.state_dict())
    assert all(p.requires_grad for p in model.connectors.parameters())

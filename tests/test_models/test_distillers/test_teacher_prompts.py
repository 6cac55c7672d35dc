"""FaceDistiller with a prompted (APT) teacher: what trains, what is saved."""
import copy

import pytest
import torch
from mmengine.structures import BaseDataElement  # noqa: F401
from mmpretrain.structures import DataSample

from mmfacekd.registry import MODELS

VIT = dict(type='FaceViT', img_size=32, patch_size=8, embed_dim=32, depth=4,
           num_heads=4, num_features=16)
HEAD = dict(type='ArcFaceHead', num_classes=5, in_channels=16, s=16.0,
            m=0.3)


def distiller_cfg(teacher_ckpt=None, **kw):
    cfg = dict(
        type='FaceDistiller',
        data_preprocessor=dict(type='FaceDataPreprocessor'),
        student=dict(type='FaceRecognizer',
                     backbone=dict(type='IResNet', depth=18, base_channels=8,
                                   input_size=32, num_features=16),
                     head=HEAD),
        teacher=dict(type='FaceRecognizer',
                     backbone=dict(VIT, prompt_cfg=dict(num_prompts=2,
                                                        groups=2)),
                     head=HEAD),
        teacher_ckpt=teacher_ckpt,
        teacher_trainable=['backbone.prompts'],
        recorders=dict(t_tok=dict(source='teacher.backbone.token_out'),
                       s_map=dict(source='student.backbone.layer4')),
        connectors=dict(
            proj=dict(type='ProjectionConnector', input='recorder.s_map',
                      in_channels=64, out_channels=32, spatial=True)),
        distill_losses=dict(
            feat=dict(type='FeatureMSELoss', teacher_token_grid=(4, 4),
                      teacher_extra_tokens=2,
                      inputs=dict(student_feat='connector.proj',
                                  teacher_feat='recorder.t_tok')),
            kd=dict(type='KDLoss', temperature=4.0,
                    inputs=dict(student_logits='student.logits',
                                teacher_logits='teacher.logits'))))
    cfg.update(kw)
    return cfg


def batch(n=4):
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 256, (n, 3, 32, 32), generator=g,
                           dtype=torch.uint8)
    samples = [DataSample().set_gt_label(i % 5) for i in range(n)]
    return dict(inputs=list(inputs), data_samples=samples)


@pytest.fixture
def plain_teacher_ckpt(tmp_path):
    torch.manual_seed(3)
    teacher = MODELS.build(dict(type='FaceRecognizer', backbone=VIT,
                                head=HEAD))
    path = tmp_path / 'teacher.pth'
    torch.save(dict(state_dict=teacher.state_dict()), path)
    return str(path), teacher


def test_only_prompts_student_and_connectors_train(plain_teacher_ckpt):
    path, plain = plain_teacher_ckpt
    model = MODELS.build(distiller_cfg(path))
    # a pretrained checkpoint without prompts loads strictly
    for k, v in plain.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[k], v), k
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith('teacher.')} == {
        'teacher.backbone.prompts.0', 'teacher.backbone.prompts.1'}
    model.train()
    assert not model.teacher.training
    data = model.data_preprocessor(batch(), training=True)
    losses = model(**data, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    for name, p in model.named_parameters():
        if name.startswith('teacher.backbone.prompts.'):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        elif name.startswith('teacher.'):
            assert p.grad is None, name
    assert all(p.grad is not None
               for p in model.connectors.proj.parameters())


def test_teacher_outputs_are_the_pretrained_prediction(plain_teacher_ckpt):
    path, plain = plain_teacher_ckpt
    model = MODELS.build(distiller_cfg(path)).eval()
    data = model.data_preprocessor(batch(), training=False)
    seen = {}
    orig = model.distill_losses.kd.forward
    model.distill_losses.kd.forward = lambda **kw: (
        seen.update(kw), orig(**kw))[1]
    orig_feat = model.distill_losses.feat.forward
    model.distill_losses.feat.forward = lambda **kw: (
        seen.update(kw), orig_feat(**kw))[1]
    with torch.no_grad():
        model(**data, mode='loss')
        ref_emb = plain.eval().extract_feat(data['inputs'])
        gt = torch.tensor([s.gt_label.item() for s in data['data_samples']])
        ref_logits = plain.head.get_logits(ref_emb, gt)['logits']
    # KD reads the teacher's logits WITHOUT prompts: the plain teacher's
    assert torch.equal(seen['teacher_logits'], ref_logits)
    # while the recorder gave the prompted tokens (16 patches + 2 prompts)
    assert seen['teacher_feat'].shape == (4, 18, 32)
    assert model.recorders['t_tok'].data is None  # released after loss()


def test_prompts_saved_and_restored(plain_teacher_ckpt):
    path, _ = plain_teacher_ckpt
    model = MODELS.build(distiller_cfg(path))
    with torch.no_grad():
        model.teacher.backbone.prompts[0].fill_(0.5)
    state = model.state_dict()
    teacher_keys = [k for k in state if k.startswith('teacher.')]
    assert teacher_keys == ['teacher.backbone.prompts.0',
                            'teacher.backbone.prompts.1']
    other = MODELS.build(distiller_cfg(path))
    result = other.load_state_dict(copy.deepcopy(state), strict=False)
    assert result.missing_keys == []
    assert torch.equal(other.teacher.backbone.prompts[0],
                       torch.full((2, 32), 0.5))
    # without the prompts in the checkpoint, they are reported missing
    del state['teacher.backbone.prompts.1']
    result = other.load_state_dict(state, strict=False)
    assert result.missing_keys == ['teacher.backbone.prompts.1']


def test_bad_trainable_prefix_and_unexpected_keys(plain_teacher_ckpt,
                                                  tmp_path):
    path, plain = plain_teacher_ckpt
    with pytest.raises(KeyError, match='matches no teacher parameter'):
        MODELS.build(distiller_cfg(path, teacher_trainable=['backbone.prmpt']))
    state = dict(plain.state_dict())
    state['backbone.extra'] = torch.zeros(1)
    bad = tmp_path / 'bad.pth'
    torch.save(dict(state_dict=state), bad)
    with pytest.raises(RuntimeError, match='unexpected keys'):
        MODELS.build(distiller_cfg(str(bad)))


def _arcface_ce_by_hand(emb, weight, gt, s, m):
    """ArcFace CE written out: s*cos(theta_y + m) on the target column."""
    cos = torch.nn.functional.normalize(emb) @ \
        torch.nn.functional.normalize(weight).t()
    theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    target = torch.cos(theta.gather(1, gt[:, None]) + m)
    logits = cos.scatter(1, gt[:, None], target) * s
    return torch.nn.functional.cross_entropy(logits, gt)


def test_prompted_identity_anchor(plain_teacher_ckpt):
    """teacher.loss_cls_prompted = w * ArcFace CE of the *prompted* teacher
    embedding through the frozen teacher head; its gradient reaches the
    prompts and nothing else of the teacher."""
    path, _ = plain_teacher_ckpt
    cfg = distiller_cfg(path, prompted_teacher_cls_weight=0.5)
    model = MODELS.build(cfg)
    with torch.no_grad():  # non-zero prompts: the prompted pass differs
        for p in model.teacher.backbone.prompts:
            p.normal_()
    model.train()
    data = model.data_preprocessor(batch(), training=True)
    losses = model(**data, mode='loss')
    gt = torch.tensor([s.gt_label.item() for s in data['data_samples']])
    with torch.no_grad():
        prompted = model.teacher.extract_feat(data['inputs'])
        with model.teacher.backbone.without_prompts():
            plain = model.teacher.extract_feat(data['inputs'])
    assert not torch.allclose(prompted, plain)
    weight = model.teacher.head.weight
    want = 0.5 * _arcface_ce_by_hand(prompted, weight, gt, 16.0, 0.3)
    torch.testing.assert_close(losses['teacher.loss_cls_prompted'], want,
                               rtol=1e-5, atol=1e-6)
    assert 'teacher.accuracy_prompted' in losses
    model.zero_grad()
    losses['teacher.loss_cls_prompted'].backward()
    for name, p in model.named_parameters():
        if name.startswith('teacher.backbone.prompts.'):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        elif name.startswith('teacher.') or name.startswith('student.'):
            assert p.grad is None or not p.grad.any(), name


def test_prompted_identity_anchor_refusals(plain_teacher_ckpt):
    path, _ = plain_teacher_ckpt
    plain_teacher = dict(type='FaceRecognizer', backbone=VIT, head=HEAD)
    with pytest.raises(ValueError, match='has no prompts'):
        MODELS.build(distiller_cfg(
            path, teacher=plain_teacher, teacher_trainable=[],
            recorders={}, connectors={}, distill_losses=dict(kd=dict(
                type='KDLoss', inputs=dict(student_logits='student.logits',
                                           teacher_logits='teacher.logits'))),
            prompted_teacher_cls_weight=1.0))
    with pytest.raises(ValueError, match="teacher_trainable="):
        MODELS.build(distiller_cfg(None, teacher_trainable=[],
                                   prompted_teacher_cls_weight=1.0))

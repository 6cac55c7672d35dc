"""AdaDistill: the adaptive EMA of the class centres against hand
computations (duplicates averaged, 2 real gloo ranks = one process on the
concatenated batch, bit-identical copies), the margin softmax, the headless
student in FaceDistiller, and the demo config through the real Runner
(teacher cache, centres in the checkpoint, resume)."""
import copy
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

from mmfacekd.models.losses import (
    AdaDistillLoss,
    adaptive_alpha,
    ema_center_update,
)
from mmfacekd.registry import MODELS

from conftest import ROOT, TINY_IDS, tiny_config

DEMO = 'configs/demo/adadistill_r18_mbf_synth.py'
C, D = 5, 4


def _unit(x):
    return x / x.norm(dim=1, keepdim=True)


def hand_update(centers, s, t, labels):
    """The update written out per class: for class c with samples I_c,
    alpha'_i = clamp(cos(s_i, t_i) * cos(w_c, t_i), 0, 1) (cos with a zero
    centre = 0), and w_c <- mean_{i in I_c} [alpha'_i w_c + (1 - alpha'_i)
    t_i / |t_i|]."""
    new = centers.clone()
    alphas = []
    for i in range(len(labels)):
        s_i, t_i, w = s[i], t[i], centers[labels[i]]
        cos_st = float(s_i @ t_i / (s_i.norm() * t_i.norm()))
        cos_wt = 0.0 if float(w.norm()) == 0 else float(
            w @ t_i / (w.norm() * t_i.norm()))
        alphas.append(min(max(cos_st * cos_wt, 0.0), 1.0))
    for c in sorted(set(labels.tolist())):
        idx = [i for i in range(len(labels)) if labels[i] == c]
        steps = [alphas[i] * centers[c] + (1 - alphas[i]) * t[i] / t[i].norm()
                 for i in idx]
        new[c] = sum(steps) / len(steps)
    return new, torch.tensor(alphas)


def _batch(seed, n):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g), torch.randn(n, D, generator=g)


def _loss_with(centers, **kw):
    loss = AdaDistillLoss(num_classes=C, embed_dim=D, s=8.0, m2=0.3, **kw)
    loss.centers.copy_(centers)
    return loss


def _centers():
    w = torch.randn(C, D, generator=torch.Generator().manual_seed(7))
    w[4] = 0  # a class without a centre yet
    return w


def test_adaptive_alpha_clamps_the_product():
    cos_st = torch.tensor([0.5, -0.5, 0.9, 0.8])
    cos_wt = torch.tensor([0.6, 0.6, -0.2, 0.0])
    assert torch.allclose(adaptive_alpha(cos_st, cos_wt),
                          torch.tensor([0.3, 0.0, 0.0, 0.0]))
    assert torch.allclose(adaptive_alpha(cos_st, cos_wt, hard_samples=False),
                          torch.tensor([0.5, 0.0, 0.9, 0.8]))


def test_duplicates_average_their_alpha_weighted_steps():
    """Class 2 three times, class 4 (zero centre) twice, class 0 once."""
    centers = _centers()
    s, t = _batch(1, 6)
    labels = torch.tensor([2, 0, 2, 4, 2, 4])
    want, alphas = hand_update(centers, s, t, labels)
    loss = _loss_with(centers)
    out = loss(s, t, labels)
    assert torch.allclose(loss.centers, want, atol=1e-6)
    # the mean of the three steps, not the last one
    t_hat = _unit(t)
    last = alphas[4] * centers[2] + (1 - alphas[4]) * t_hat[4]
    assert not torch.allclose(loss.centers[2], last, atol=1e-3)
    # an empty centre: alpha' = 0, the mean of its teacher features
    assert torch.allclose(loss.centers[4], (t_hat[3] + t_hat[5]) / 2,
                          atol=1e-6)
    assert torch.equal(loss.centers[[1, 3]], centers[[1, 3]])  # untouched
    assert out['alpha_mean'].item() == pytest.approx(alphas.mean().item(),
                                                     abs=1e-6)
    raw = [(_unit(s)[i] @ t_hat[i]) * F.cosine_similarity(
        centers[labels[i]], t[i], dim=0) for i in range(6) if labels[i] != 4]
    assert out['alpha_clamped'].item() == pytest.approx(
        sum(float(r) < 0 for r in raw) / 6)
    drift = [(want[c] - centers[c]).norm() for c in (0, 2, 4)]
    assert out['center_drift'].item() == pytest.approx(
        float(sum(drift) / 3), abs=1e-6)
    # the pure helper agrees
    classes, rows = ema_center_update(centers, t_hat, labels, alphas)
    assert classes.tolist() == [0, 2, 4]
    assert torch.allclose(rows, want[[0, 2, 4]], atol=1e-6)


def test_loss_is_arcface_over_the_updated_centres():
    centers = _centers()
    s, t = _batch(2, 4)
    labels = torch.tensor([1, 4, 1, -1])  # -1: ignored
    loss = _loss_with(centers, loss_weight=0.5)
    s = s.requires_grad_()
    out = loss(s, t, labels)
    new, _ = hand_update(centers, s.detach()[:3], t[:3], labels[:3])
    assert torch.allclose(loss.centers, new, atol=1e-6)
    total = 0.0
    for i in range(3):
        cos = [float(_unit(s.detach())[i] @ (new[c] / new[c].norm()))
               if float(new[c].norm()) else 0.0 for c in range(C)]
        y = int(labels[i])
        logits = [8.0 * c for c in cos]
        logits[y] = 8.0 * math.cos(math.acos(cos[y]) + 0.3)
        total += math.log(sum(math.exp(v) for v in logits)) - logits[y]
    assert out['loss'].item() == pytest.approx(0.5 * total / 3, rel=1e-5)
    out['loss'].backward()
    assert s.grad is not None and s.grad[:3].abs().sum() > 0
    assert torch.equal(s.grad[3], torch.zeros(D))  # ignored sample
    assert not loss.centers.requires_grad
    assert list(loss.parameters()) == []
    # eval mode: no update
    loss.eval()
    before = loss.centers.clone()
    loss(s.detach(), t, labels)
    assert torch.equal(loss.centers, before)


def test_centres_are_checkpointed_and_checked():
    loss = _loss_with(_centers())
    assert torch.equal(loss.state_dict()['centers'], _centers())
    fresh = AdaDistillLoss(num_classes=C, embed_dim=D)
    fresh.load_state_dict(loss.state_dict())
    assert torch.equal(fresh.centers, _centers())
    with pytest.raises(ValueError, match='centres are 4-d'):
        loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match='num_classes 5'):
        loss(torch.randn(2, D), torch.randn(2, D), torch.tensor([0, 5]))


def test_init_centres_from_a_prototype_head(tmp_path):
    w = torch.randn(C, D)
    path = str(tmp_path / 'proto.pth')
    torch.save(dict(state_dict=dict(weight=w)), path)
    loss = AdaDistillLoss(num_classes=C, embed_dim=D, init_centers=path)
    assert torch.allclose(loss.centers, _unit(w))
    with pytest.raises(ValueError, match='proto.pth'):
        AdaDistillLoss(num_classes=C + 1, embed_dim=D, init_centers=path)


# ------------------------------------------------------------- 2 gloo ranks
def _global_batch():
    s, t = _batch(3, 9)
    # class 2 on both ranks, class 3 twice on rank 1, class 4 empty before
    labels = torch.tensor([2, 0, 4, 1, 2, 3, 3, 4, 2])
    return s, t, labels


def _two_rank_step(rank, world):
    s, t, labels = _global_batch()
    shard = slice(0, 4) if rank == 0 else slice(4, 9)  # unequal shards
    loss = _loss_with(_centers())
    out = loss(s[shard], t[shard], labels[shard])
    return dict(centers=loss.centers, alpha_mean=out['alpha_mean'],
                center_drift=out['center_drift'])


def test_two_ranks_equal_one_process_on_the_concatenated_batch(run_gloo):
    r0, r1 = run_gloo(_two_rank_step, world=2)
    assert torch.equal(r0['centers'], r1['centers'])  # bit-identical copies
    s, t, labels = _global_batch()
    want, alphas = hand_update(_centers(), s, t, labels)
    assert torch.allclose(r0['centers'], want, atol=1e-6)
    single = _loss_with(_centers())
    single(s, t, labels)
    assert torch.allclose(r0['centers'], single.centers, atol=1e-6)
    for r in (r0, r1):
        assert r['alpha_mean'].item() == pytest.approx(
            alphas.mean().item(), abs=1e-6)
    # what the public code does — each rank from its local batch — differs
    local, _ = hand_update(_centers(), s[:4], t[:4], labels[:4])
    assert not torch.allclose(local[2], want[2], atol=1e-3)


# ------------------------------------------------------------- distiller
def _distiller_cfg(tiny_recognizer, **kw):
    student = tiny_recognizer('mbf', num_classes=4)
    student['head'] = None
    cfg = dict(type='FaceDistiller', student=student,
               teacher=tiny_recognizer('r18', num_classes=4),
               distill_losses=dict(adadistill=dict(
                   type='AdaDistillLoss', num_classes=4, embed_dim=16,
                   s=16.0, m2=0.2,
                   inputs=dict(student_embedding='student.embedding',
                               teacher_embedding='teacher.embedding',
                               gt_label='gt_label'))))
    cfg.update(kw)
    return cfg


def test_headless_student_in_the_distiller(tiny_recognizer):
    torch.manual_seed(0)
    model = MODELS.build(_distiller_cfg(tiny_recognizer))
    assert 'student.logits' not in model.available_inputs()
    imgs = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    samples = [DataSample().set_gt_label(i % 2) for i in range(4)]
    data = model.data_preprocessor(dict(inputs=list(imgs),
                                        data_samples=samples), True)
    model.train()
    losses = model(**data, mode='loss')
    assert not any(k.startswith('student.') for k in losses)
    assert losses['distill.adadistill.num_centers'].item() == 2
    for key in ('alpha_mean', 'alpha_clamped', 'center_drift'):
        assert f'distill.adadistill.{key}' in losses
    losses['distill.loss_adadistill'].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.student.parameters())
    assert 'distill_losses.adadistill.centers' in model.state_dict()

    bad = _distiller_cfg(tiny_recognizer)
    bad['distill_losses']['adadistill']['inputs']['student_embedding'] = \
        'student.logits'
    with pytest.raises(KeyError, match='not available'):
        MODELS.build(bad)
    with pytest.raises(ValueError, match='student.head=None'):
        MODELS.build(_distiller_cfg(tiny_recognizer, distill_losses=dict()))


def test_configs_wire_the_paper_setting():
    def load(p):
        return Config.fromfile(osp.join(ROOT, p)).model

    r50 = load('configs/adadistill/adadistill_r50_mbf.py')
    (loss, ) = r50.distill_losses.values()
    assert (loss.type, loss.s, loss.m2, loss.num_classes, loss.embed_dim) \
        == ('AdaDistillLoss', 64.0, 0.45, 85742, 512)
    assert r50.student.head is None
    assert r50.student.backbone.type == 'MobileFaceNet'
    assert (r50.teacher.backbone.type, r50.teacher.backbone.depth) == \
        ('IResNet', 50)
    assert r50.teacher_ckpt == 'checkpoints/arcface_r50_ms1mv2.pth'
    demo = load(DEMO)
    assert demo.student.head is None
    assert demo.distill_losses.adadistill.num_classes == \
        demo.teacher.head.num_classes


# ------------------------------------------------------------- real Runner
def test_demo_config_trains_with_the_cache_and_resumes(tiny_synth, tmp_path):
    from mmfacekd.utils.teacher_cache_writer import write_teacher_cache
    cfg = tiny_config(DEMO, tiny_synth, str(tmp_path / 'work'), epochs=1)
    cfg.model.teacher.head.num_classes = TINY_IDS
    cfg.model.distill_losses.adadistill.num_classes = TINY_IDS
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    torch.manual_seed(0)
    teacher = MODELS.build(cfg.model.teacher)
    cfg.model.teacher_ckpt = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), cfg.model.teacher_ckpt)
    cache = write_teacher_cache(cfg, out=str(tmp_path / 'cache.npy'),
                                batch_size=16, num_workers=0, progress=False)
    cfg.model.teacher_cache = cache
    resume_cfg = copy.deepcopy(cfg)

    runner = Runner.from_cfg(cfg)
    runner.train()
    log = open(runner.logger.log_file).read()
    for key in ('distill.loss_adadistill', 'distill.adadistill.alpha_mean',
                'distill.adadistill.alpha_clamped',
                'distill.adadistill.center_drift'):
        assert key in log, key
    assert 'student.loss_cls' not in log
    centers = runner.model.distill_losses.adadistill.centers
    assert int((centers.norm(dim=1) > 0).sum()) == TINY_IDS  # all seen
    ckpt = torch.load(tmp_path / 'work' / 'epoch_1.pth', weights_only=True)
    key = 'distill_losses.adadistill.centers'
    assert torch.equal(ckpt['state_dict'][key], centers)
    assert not any(k.startswith('student.head') for k in ckpt['state_dict'])

    resume_cfg.work_dir = str(tmp_path / 'resumed')
    resume_cfg.resume = True
    resume_cfg.load_from = str(tmp_path / 'work' / 'epoch_1.pth')
    r2 = Runner.from_cfg(resume_cfg)
    r2.train()  # resumes at the end of epoch 1: nothing left to train
    assert r2.epoch == 1
    assert torch.equal(r2.model.distill_losses.adadistill.centers, centers)

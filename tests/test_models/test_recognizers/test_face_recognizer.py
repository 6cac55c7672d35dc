"""FaceRecognizer.loss_by_embedding: the one classification loss of a
recognizer (used by ``loss`` and by FaceDistiller), with per-sample flags."""
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from mmfacekd.models.recognizers import cls_loss_mask
from mmfacekd.registry import MODELS

NUM_CLASSES = 5


def recognizer(head=True, **head_kw):
    cfg = dict(type='FaceRecognizer',
               backbone=dict(type='IResNet', depth=18, base_channels=8,
                             input_size=32, num_features=16))
    if head:
        cfg['head'] = dict(type='CosFaceHead', num_classes=NUM_CLASSES,
                           in_channels=16, s=8.0, m=0.35, **head_kw)
    return MODELS.build(cfg)


def samples(labels, flags=None):
    out = [DataSample().set_gt_label(y) for y in labels]
    for ds, f in zip(out, flags or ()):
        if f is not None:
            ds.set_metainfo(dict(with_cls_loss=f))
    return out


def hand_cosface(emb, weight, labels, s, m):
    """CosFace CE per sample by explicit loops."""
    out = []
    for e, y in zip(emb, labels):
        cos = torch.stack([F.cosine_similarity(e, w, 0) for w in weight])
        logit = s * cos
        logit[y] = s * (cos[y] - m)
        out.append(torch.logsumexp(logit, 0) - logit[y])
    return torch.stack(out)


def test_cls_loss_mask():
    assert cls_loss_mask(samples([0, 1]), torch.device('cpu')) is None
    assert cls_loss_mask(samples([0, 1], [True, None]),
                         torch.device('cpu')) is None
    mask = cls_loss_mask(samples([0, 1, 2], [False, None, True]),
                         torch.device('cpu'))
    assert mask.tolist() == [False, True, True]


def test_loss_by_embedding_flags_and_logits():
    torch.manual_seed(0)
    model = recognizer()
    emb = torch.randn(6, 16, requires_grad=True)
    labels = [0, 1, 2, 3, 4, 0]
    flags = [True, False, False, True, None, False]  # None: no flag -> loss
    losses, logits = model.loss_by_embedding(emb, samples(labels, flags))
    per_sample = hand_cosface(emb.detach(), model.head.weight.detach(),
                              labels, 8.0, 0.35)
    keep = torch.tensor([0, 3, 4])
    torch.testing.assert_close(losses['loss_cls'], per_sample[keep].mean())
    # logits of the whole batch, for a distiller
    assert logits['logits'].shape == logits['margin_logits'].shape == (6, 5)
    ref = model.head.get_logits(emb, torch.tensor(labels))
    torch.testing.assert_close(logits['margin_logits'], ref['margin_logits'])
    acc = (ref['logits'].argmax(1) == torch.tensor(labels))[keep].float()
    torch.testing.assert_close(losses['accuracy'], acc.mean())
    # unflagged samples get no gradient from the classification loss
    losses['loss_cls'].backward()
    assert emb.grad[[1, 2, 5]].abs().sum() == 0
    assert (emb.grad[keep].abs().sum(1) > 0).all()


def test_loss_is_loss_by_embedding():
    torch.manual_seed(1)
    model = recognizer(loss_weight=0.5).eval()
    x = torch.randn(4, 3, 32, 32)
    data = samples([0, 1, 2, 3], [True, False, True, True])
    ref, _ = model.loss_by_embedding(model.extract_feat(x), data)
    out = model.loss(x, data)
    assert set(out) == {'loss_cls', 'accuracy'}
    torch.testing.assert_close(out['loss_cls'], ref['loss_cls'])
    # without flags it is exactly the head's own loss
    plain = samples([0, 1, 2, 3])
    torch.testing.assert_close(
        model.loss(x, plain)['loss_cls'],
        model.head.loss(model.extract_feat(x), plain)['loss_cls'])


def test_no_flagged_sample_and_no_head():
    model = recognizer()
    emb = torch.randn(3, 16, requires_grad=True)
    losses, logits = model.loss_by_embedding(
        emb, samples([0, 1, 2], [False] * 3))
    assert losses['loss_cls'].item() == 0 and losses['loss_cls'].requires_grad
    losses['loss_cls'].backward()  # a graph, so DDP sees every parameter
    assert logits['logits'].shape == (3, 5)
    headless = recognizer(head=False)
    with pytest.raises(RuntimeError, match='without a head'):
        headless.loss_by_embedding(emb, samples([0, 1, 2]))
    with pytest.raises(RuntimeError, match='without a head'):
        headless.get_logits(emb)

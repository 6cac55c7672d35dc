"""``with_cls_loss`` flags (EKD's P x K sampler) with a class-sharded head:
the PartialFCHead rows are the global batch, so the flags of every rank
count, also when one rank's samples are all flagged; 1 process and 2 gloo
ranks against CosFace by hand on the flagged samples."""
import torch
from spawn_utils import run_on_gloo
from test_face_recognizer import hand_cosface, samples

from mmfacekd.registry import MODELS

NUM_CLASSES, S, M = 5, 8.0, 0.35
LABELS = [0, 1, 2, 3, 4, 0]
# rank 0 (rows 0-2): all flagged (no mask on that rank); rank 1: one
FLAGS = [True, None, True, False, True, False]


def _recognizer():
    from mmfacekd.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='FaceRecognizer',
        backbone=dict(type='IResNet', depth=18, base_channels=8,
                      input_size=32, num_features=16),
        head=dict(type='PartialFCHead', num_classes=NUM_CLASSES,
                  in_channels=16, s=S, m1=1.0, m2=0.0, m3=M)))


def _embeddings():
    return torch.randn(6, 16, generator=torch.Generator().manual_seed(1))


def _loss(rank, world):
    model = _recognizer()
    rows = slice(rank * 6 // world, (rank + 1) * 6 // world)
    losses, _ = model.loss_by_embedding(
        _embeddings()[rows], samples(LABELS[rows], FLAGS[rows]))
    return {k: v.detach() for k, v in losses.items()}


def _expected():
    # the full head: shards of any world size concatenate to one init
    weight = _recognizer().head.weight.detach()
    per_sample = hand_cosface(_embeddings(), weight, LABELS, S, M)
    flagged = torch.tensor([f is not False for f in FLAGS])
    return per_sample[flagged].mean()


def test_flags_on_one_process():
    torch.testing.assert_close(_loss(0, 1)['loss_cls'], _expected())


def test_flags_of_every_rank_count(tmp_path):
    ranks = run_on_gloo(_loss, 2, tmp_path)
    want = _expected()
    for res in ranks:  # the same global loss on every rank
        torch.testing.assert_close(res['loss_cls'], want)

"""Per-rank cases of tests/test_models/test_losses/test_sharded.py (a
module of its own so that the spawned gloo processes import only this):
KD, DKD and GKD on class-sharded logits and the PartialFCHead, run on every
rank of one process group; the test module compares what each rank returns
with single-process computations."""
import itertools
import os
import tempfile

import torch
import torch.distributed as dist
from mmpretrain.structures import DataSample

from mmfacekd.engine.wrappers import FaceDistributedDataParallel
from mmfacekd.models.heads import PartialFCHead
from mmfacekd.models.heads.shard_checkpoint import (
    gather_sharded_state,
    shard_optimizer_state,
    write_full_state,
)
from mmfacekd.models.losses import (
    DKDLoss,
    GKDLoss,
    KDLoss,
    ShardedDKDLoss,
    ShardedGKDLoss,
    ShardedKDLoss,
)
from mmfacekd.models.losses.sharded import (
    sharded_group_classes,
    sharded_softmax_stats,
)
from mmfacekd.models.utils.class_shard import class_shard
from mmfacekd.registry import MODELS
from mmfacekd.utils.checkpoint_safety import load_checkpoint_safely

B, C = 8, 23  # 23 = 6 + 6 + 6 + 5 on four ranks: the remainder rule
F64 = torch.float64

#: (name, single-process class, sharded class, kwargs, needs labels, dtype)
CASES = [(f'kd_T{t:g}', KDLoss, ShardedKDLoss, dict(temperature=t), False,
          torch.float32) for t in (1.0, 4.0)]
CASES += [(f'dkd_T{t:g}', DKDLoss, ShardedDKDLoss,
           dict(temperature=t, alpha=1.0, beta=8.0), True, torch.float32)
          for t in (1.0, 4.0)]
CASES += [(f'gkd_T{t:g}_{mode}_force{int(force)}', GKDLoss, ShardedGKDLoss,
           dict(temperature=t, k_mode=mode, force_target=force, fixed_k=7,
                batch_k_step=3, lambda3=0.5, selection='sort'), True,
           torch.float32)
          for t, mode, force in itertools.product(
              (1.0, 4.0), ('per_sample', 'batch', 'fixed'), (False, True))]
CASES += [('gkd_teacher_natural_f64', GKDLoss, ShardedGKDLoss,
           dict(temperature=4.0, rank_by='teacher', lambda1='p_phi_t',
                lambda3='p_psi_t', force_target=True, selection='sort'),
           True, F64)]


def data(dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(B, C, generator=gen, dtype=F64) * 4
    t = torch.randn(B, C, generator=gen, dtype=F64) * 4
    y = torch.randint(0, C, (B, ), generator=gen)
    return s.to(dtype), t.to(dtype), y


def tie_data():
    """Rows with 4 or 5 top classes of mass exactly 1 each (logit 0) and
    the rest tied far below (mass below float64 rounding): with tau =
    0.625, |cum - tau| ties between k = 2 and 3 (first minimum wins), and
    the tied classes sit on several shards."""
    z = torch.full((4, C), -800.0, dtype=F64)
    z[0, [1, 7, 13, 20]] = 0.0
    z[1, [5, 6, 12, 18, 22]] = 0.0
    z[2, [0, 11, 12, 19]] = 0.0
    z[3, :] = 0.0  # every class tied
    return z


def selection_cases():
    """(name, ranking logits, tau, T) of the eq. 3 checks."""
    return (('rand32_T1', data()[0], 0.93, 1.0),
            ('rand32_T4', data()[0], 0.93, 4.0),
            ('rand64_T4', data(F64)[0], 0.93, 4.0),
            ('ties', tie_data(), 0.625, 1.0))


def call(loss, s, t, y, needs_label):
    x = s.clone().requires_grad_()
    out = loss(x, t, y) if needs_label else loss(x, t)
    value = out['loss'] if isinstance(out, dict) else out
    value.backward()
    return value.detach(), x.grad


def loss_cases(rank, world):
    shard = class_shard(C, world, rank)
    cols = slice(shard.start, shard.stop)
    out = {}
    for name, _, sharded, kw, needs_label, dtype in CASES:
        s, t, y = data(dtype)
        out[name] = call(sharded(**kw), s[:, cols], t[:, cols], y,
                          needs_label)
    # eq. 3 k and masks, random float32 / float64 and exact ties
    tie = tie_data()
    for name, z, tau, temp in selection_cases():
        zl = z[:, cols]
        grouping = sharded_group_classes(
            zl, sharded_softmax_stats(zl, temp), shard.start, C, tau=tau)
        out[f'k_{name}'] = (grouping.k, grouping.mask)
    # a given k reaching into the far tie group, and a forced target
    k = torch.full((tie.size(0), ), 7, dtype=torch.long)
    y = torch.tensor([22, 0, 5, 9])
    for force in (False, True):
        grouping = sharded_group_classes(
            tie[:, cols], None, shard.start, C, k=k,
            gt_label=y if force else None)
        out[f'topk_ties_force{int(force)}'] = (grouping.k, grouping.mask)
    return out




# --------------------------------------------------------------- the head
HEAD_C, HEAD_D, B_LOCAL = 11, 8, 3
#: margin settings of the exactness cases (MarginHead keyword arguments)
MARGINS = dict(
    arcface=dict(s=16.0, m2=0.3),
    arcface_exact=dict(s=16.0, m2=0.3, grad_mode='exact'),
    cosface=dict(s=16.0, m2=0.0, m3=0.25),
    combined=dict(s=16.0, m1=1.2, m2=0.1, m3=0.05, grad_mode='exact'))
SAMPLE_RATE = 0.5


def head_data(world):
    """Full embeddings (world * B_LOCAL, D), labels and a full weight."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(world * B_LOCAL, HEAD_D, generator=gen)
    w = torch.randn(HEAD_C, HEAD_D, generator=gen)
    y = torch.randint(0, HEAD_C, (world * B_LOCAL, ), generator=gen)
    return x, y, w


def _head_step(head, x, y, **kw):
    x = x.clone().requires_grad_()
    logits = head.get_logits(x, y, **kw)
    losses = head.loss_by_logits(logits)
    losses['loss_cls'].backward()
    return logits, losses, x.grad


def _error(fn) -> str:
    try:
        fn()
    except ValueError as exc:
        return str(exc)
    return ''


def head_cases(rank, world):
    out = {}
    torch.manual_seed(0)
    out['init'] = PartialFCHead(HEAD_C, in_channels=HEAD_D).weight.detach()
    x, y, w = head_data(world)
    rows = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
    for name, kw in MARGINS.items():
        head = PartialFCHead(HEAD_C, in_channels=HEAD_D, **kw)
        shard = head.shard
        head.weight.data.copy_(w[shard.start:shard.stop])
        _, losses, gx = _head_step(head, x[rows], y[rows])
        out[name] = (losses['loss_cls'].detach(), gx, head.weight.grad,
                     losses['accuracy'])
    # sampled negatives: the student, a teacher on the student's support
    student = PartialFCHead(HEAD_C, in_channels=HEAD_D, s=16.0, m2=0.3,
                            sample_rate=SAMPLE_RATE, seed=123)
    teacher = PartialFCHead(HEAD_C, in_channels=HEAD_D, s=16.0, m2=0.3,
                            seed=5).eval()
    student.weight.data.copy_(w[student.shard.start:student.shard.stop])
    logits, losses, gx = _head_step(student, x[rows], y[rows])
    with torch.no_grad():
        t_logits = teacher.get_logits(x[rows], y[rows],
                                      class_index=logits['class_index'])
    out['sampled'] = dict(
        loss=losses['loss_cls'].detach(), grad_x=gx,
        grad_w=student.weight.grad, class_index=logits['class_index'],
        column_label=logits['column_label'],
        teacher_index=t_logits['class_index'],
        student_logits=logits['margin_logits'].detach(),
        teacher_logits=t_logits['margin_logits'])
    kd_losses = dict(kd=(ShardedKDLoss(temperature=4.0), False),
                     dkd=(ShardedDKDLoss(temperature=4.0), True),
                     gkd=(ShardedGKDLoss(temperature=4.0, force_target=True),
                          True))
    for name, (loss, needs_label) in kd_losses.items():
        out['sampled'][name] = call(loss, logits['margin_logits'].detach(),
                                    t_logits['margin_logits'],
                                    logits['column_label'], needs_label)
    # the same seed draws the same negatives, step after step (one
    # positive, class 0: every rank draws negatives)
    twins = [PartialFCHead(HEAD_C, in_channels=HEAD_D,
                           sample_rate=SAMPLE_RATE, seed=123)
             for _ in range(2)]
    out['draws'] = [[twin.sample_classes(torch.tensor([0]))
                     for _ in range(3)] for twin in twins]
    # float32 statistics under autocast
    head = PartialFCHead(HEAD_C, in_channels=HEAD_D, s=16.0, m2=0.3)
    head.weight.data.copy_(w[head.shard.start:head.shard.stop])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        logits = head.get_logits(x[rows], y[rows])
        amp_loss = head.loss_by_logits(logits)['loss_cls']
    out['amp'] = (amp_loss.detach(), logits['margin_logits'].dtype)
    # a full (C, D) head loads as this rank's rows; anything else is refused
    loaded = PartialFCHead(HEAD_C, in_channels=HEAD_D)
    loaded.load_state_dict({'weight': w})
    out['loaded'] = loaded.weight.detach()
    out['err_shard'] = _error(
        lambda: loaded.load_state_dict({'weight': w[:3]}))
    # bad input: the same clear error on every rank, no hang
    bad = y[rows].clone()
    if rank == world - 1:
        bad[0] = HEAD_C
    out['err_label'] = _error(lambda: head.get_logits(x[rows], bad))
    short = B_LOCAL - 1 if rank == world - 1 else B_LOCAL
    out['err_batch'] = _error(
        lambda: head.get_logits(x[rows][:short], y[rows][:short]))
    s, t, yy = data()
    n = B - 1 if rank == world - 1 else B
    shard = class_shard(C, world, rank)
    out['err_rows'] = _error(lambda: ShardedKDLoss()(
        s[:n, shard.start:shard.stop], t[:n, shard.start:shard.stop]))
    return out


# ------------------------------------------------- a recognizer under DDP
#: tiny MobileFaceNet of the distiller tests (16-d embeddings of 32x32)
DDP_BACKBONE = dict(type='MobileFaceNet', input_size=32, num_features=16,
                    blocks=(1, 1, 1, 1), scale=1, expansion=(16, 32, 64),
                    conv_sep_channels=32)
DDP_C, DDP_B_LOCAL = 5, 2  # 5 classes on 2 ranks: shards of 3 and 2


def recognizer(head_type):
    """A tiny FaceRecognizer with ``head_type`` (same weights for any
    world size: seeded backbone, world-invariant PartialFC init)."""
    torch.manual_seed(3)
    model = MODELS.build(dict(
        type='FaceRecognizer', backbone=DDP_BACKBONE,
        head=dict(type=head_type, num_classes=DDP_C, in_channels=16,
                  s=16.0, m2=0.2)))
    return model.train(False)  # BatchNorm on running statistics


def pfc_init():
    """The full initial PartialFC head of :func:`recognizer` (its init is
    seeded by ``torch.initial_seed()`` only)."""
    torch.manual_seed(3)
    return PartialFCHead(DDP_C, in_channels=16).weight.detach()


def ddp_data(world):
    gen = torch.Generator().manual_seed(11)
    images = torch.rand(world * DDP_B_LOCAL, 3, 32, 32, generator=gen) * 255
    labels = torch.randint(0, DDP_C, (world * DDP_B_LOCAL, ), generator=gen)
    samples = [DataSample().set_gt_label(int(v)) for v in labels]
    return images, samples


def ddp_cases(rank, world):
    """One training step of FaceDistributedDataParallel around a
    recognizer with a PartialFCHead; every gradient after DDP's sync."""
    model = recognizer('PartialFCHead')
    images, samples = ddp_data(world)
    rows = slice(rank * DDP_B_LOCAL, (rank + 1) * DDP_B_LOCAL)
    wrapped = FaceDistributedDataParallel(model, broadcast_buffers=False) \
        if world > 1 else model
    data = model.data_preprocessor(dict(inputs=images[rows],
                                        data_samples=samples[rows]))
    losses = wrapped(**data, mode='loss')
    losses['loss_cls'].backward()
    return dict(loss=losses['loss_cls'].detach(),
                grads={n: p.grad for n, p in model.named_parameters()
                       if p.grad is not None})


def teacher_checkpoint(path):
    """A full-head teacher checkpoint (a plain MarginHead recognizer)."""
    torch.manual_seed(5)
    torch.save(dict(state_dict=recognizer('MarginHead').state_dict()), path)
    return path


def distiller_cfg(head_type, ckpt):
    """GKD (force_target) + KD distiller; sharded heads and losses for
    ``head_type='PartialFCHead'``."""
    head = dict(type=head_type, num_classes=DDP_C, in_channels=16, s=16.0,
                m2=0.2)
    net = dict(type='FaceRecognizer', backbone=DDP_BACKBONE, head=head)
    sharded = 'Sharded' if head_type == 'PartialFCHead' else ''
    label = 'student.column_label' if sharded else 'gt_label'
    return dict(
        type='FaceDistiller', student=net, teacher=net, teacher_ckpt=ckpt,
        distill_losses=dict(
            gkd=dict(type=f'{sharded}GKDLoss', temperature=4.0,
                     force_target=True,
                     inputs=dict(student_logits='student.margin_logits',
                                 teacher_logits='teacher.margin_logits',
                                 gt_label=label)),
            kd=dict(type=f'{sharded}KDLoss', temperature=4.0,
                    inputs=dict(student_logits='student.logits',
                                teacher_logits='teacher.logits'))))


def build_distiller(head_type, ckpt):
    torch.manual_seed(3)
    return MODELS.build(distiller_cfg(head_type, ckpt)).train(False)


def distill_step(model, data, wrapped=None):
    losses = (wrapped or model)(**data, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    return ({k: v.detach() for k, v in losses.items() if 'loss' in k},
            {n: p.grad for n, p in model.student.named_parameters()})


def distill_cases(rank, world):
    """A FaceDistiller step with sharded student and frozen teacher heads
    (the teacher loaded from a full-head checkpoint) under DDP."""
    ckpt = teacher_checkpoint(tempfile.mkdtemp() + '/teacher.pth')
    model = build_distiller('PartialFCHead', ckpt)
    images, samples = ddp_data(world)
    rows = slice(rank * DDP_B_LOCAL, (rank + 1) * DDP_B_LOCAL)
    data = model.data_preprocessor(dict(inputs=images[rows],
                                        data_samples=samples[rows]))
    wrapped = FaceDistributedDataParallel(model, broadcast_buffers=False) \
        if world > 1 else None
    return distill_step(model, data, wrapped)


def head_step(head, optimizer, world, rank):
    """One SGD step of ``head`` on this rank's rows of head_data."""
    x, y, _ = head_data(world)
    rows = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
    optimizer.zero_grad()
    head.loss_by_logits(head.get_logits(x[rows], y[rows]))['loss_cls'] \
        .backward()
    optimizer.step()


OPTIMIZERS = dict(
    sgd=lambda params: torch.optim.SGD(params, lr=0.5, momentum=0.9),
    adamw=lambda params: torch.optim.AdamW(params, lr=0.1))


def checkpoint_cases(rank, world):
    """Save a sharded head + optimizer state as MMEngine does (rank 0
    writes its own state dicts, with ShardedHeadCheckpointHook's full
    tensors), then resume every rank from the file (SGD and AdamW)."""

    def make(kind):
        torch.manual_seed(0)
        head = PartialFCHead(HEAD_C, in_channels=HEAD_D, s=16.0, m2=0.3)
        return head, OPTIMIZERS[kind](head.parameters())

    def states(head, optimizer):
        return {k: v for k, v in optimizer.state[head.weight].items()
                if v.dim() == 2}

    out = {}
    for kind in OPTIMIZERS:
        head, optimizer = make(kind)
        head_step(head, optimizer, world, rank)
        gathered = gather_sharded_state(head, optimizer)
        path = os.path.join(tempfile.gettempdir(),
                            f'pfc_{os.environ.get("MASTER_PORT", "0")}.pth')
        checkpoint = None
        if rank == 0:
            checkpoint = dict(state_dict=head.state_dict(),
                              optimizer=optimizer.state_dict())
            write_full_state(checkpoint, gathered)
            torch.save(checkpoint, path)
        if world > 1:
            dist.barrier()
        loaded = load_checkpoint_safely(path)
        resumed, resumed_opt = make(kind)
        resumed.load_state_dict(loaded['state_dict'])
        shard_optimizer_state(loaded, resumed, resumed_opt)
        resumed_opt.load_state_dict(loaded['optimizer'])
        if world > 1:
            dist.barrier()
        if rank == 0:
            os.remove(path)
        out[kind] = dict(
            checkpoint=checkpoint,
            own=(head.weight.detach(), states(head, optimizer)),
            resumed=(resumed.weight.detach(), states(resumed, resumed_opt)))
    return out


def all_cases(rank, world):
    return dict(loss=loss_cases(rank, world), head=head_cases(rank, world),
                ddp=ddp_cases(rank, world),
                distill=distill_cases(rank, world),
                ckpt=checkpoint_cases(rank, world))

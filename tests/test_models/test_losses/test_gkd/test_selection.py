"""Eq. 2-3 (:mod:`mmfacekd.models.losses.gkd.selection`) against a full
sort (``refs.direct_k``) and the authors' loops, for both implementations
(``selection`` fixture: ``'sort'`` and ``'band'``)."""
import pytest
import torch

from mmfacekd.models.losses import (
    GKDLoss,
    primary_group_mask,
    select_batch_k,
    select_primary_k,
)

from . import refs
from .refs import F64


@pytest.mark.parametrize('kind,num_classes', [('flat', 20000),
                                              ('peaked', 20000),
                                              ('mixed', 30000),
                                              ('mixed', 500)])
@pytest.mark.parametrize('temperature', [1.0, 4.0])
def test_per_sample_k_equals_direct_argmin(kind, num_classes, temperature,
                                           selection):
    gen = torch.Generator().manual_seed(num_classes + int(temperature))
    logits = refs.make_logits(kind, 6, num_classes, gen)
    for tau in (0.01, 0.3, 0.5, 0.93, 0.999):
        k = select_primary_k(logits, tau, temperature, selection=selection)
        assert torch.equal(k, refs.direct_k(logits, tau, temperature)), tau


def test_primary_group_is_the_top_k_of_the_ranking_network(selection):
    gen = torch.Generator().manual_seed(5)
    student = refs.make_logits('mixed', 6, 20000, gen)
    teacher = refs.make_logits('flat', 6, 20000, gen)
    for rank_by, ranking in (('student', student), ('teacher', teacher)):
        loss = GKDLoss(tau=0.9, rank_by=rank_by, temperature=2.0,
                       selection=selection)
        mask = loss.primary_mask(student, teacher)
        k = refs.direct_k(ranking, 0.9, 2.0)
        order = ranking.argsort(dim=1, descending=True)
        for i in range(6):
            expected = torch.zeros(20000, dtype=torch.bool)
            expected[order[i, :k[i]]] = True
            assert torch.equal(mask[i], expected), (rank_by, i)
        out = loss(student, teacher)
        assert out['k_mean'].item() == pytest.approx(k.double().mean().item())


def test_primary_group_mask_counts_and_ties(selection):
    gen = torch.Generator().manual_seed(6)
    logits = refs.make_logits('flat', 5, 30000, gen)
    k = torch.tensor([1, 64, 2500, 12000, 30000])
    mask = primary_group_mask(logits, k, selection=selection)
    order = logits.argsort(dim=1, descending=True)
    for i in range(5):
        assert mask[i].sum() == k[i]
        assert mask[i, order[i, :k[i]]].all()
    # Ties at the k-th value still give exactly k classes.
    tied = torch.zeros(2, 5000, dtype=F64)
    tied[:, :10] = 1.0
    mask = primary_group_mask(tied, torch.tensor([5, 3000]),
                              selection=selection)
    assert mask.sum(1).tolist() == [5, 3000]
    assert mask[1, :10].all() and mask[0, 10:].sum() == 0


def test_batch_k_grid_boundaries():
    # Uniform rows: the sorted batch mass after n classes is n / C * B, so
    # tau between two grid points pins the grid semantics exactly.
    logits = torch.zeros(4, 1000, dtype=F64)
    for tau, expected in ((0.1015, 201), (0.1005, 101), (0.0005, 1),
                          (0.9, 901)):
        assert refs.authors_batch_k(logits, tau) == expected
        assert select_batch_k(logits, tau) == expected
    # Beyond the last grid point (901) the authors' loop finds nothing.
    assert refs.authors_batch_k(logits, 0.95) is None
    assert select_batch_k(logits, 0.95) == 1000


# ------------------------------------------------------------ sort == band
def _random_case(gen, trial):
    """Logits of many shapes and kinds, including exact ties."""
    batch = int(torch.randint(1, 7, (1, ), generator=gen))
    num_classes = [2, 7, 300, 5000, 12000][trial % 5]
    kind = ['flat', 'peaked', 'mixed', 'quantized', 'tied_top',
            'constant'][trial % 6]
    if kind in ('flat', 'peaked', 'mixed'):
        z = refs.make_logits(kind, batch, num_classes, gen)
    elif kind == 'quantized':  # few distinct values: ties everywhere
        z = (refs.make_logits('mixed', batch, num_classes, gen) * 2).round()
    elif kind == 'tied_top':  # a block of equal top classes
        z = refs.make_logits('flat', batch, num_classes, gen)
        z[:, 1::3] = z.amax(dim=1, keepdim=True)
    else:
        z = torch.zeros(batch, num_classes, dtype=F64)
    labels = torch.randint(num_classes, (batch, ), generator=gen)
    return z, labels


def test_sort_and_band_give_identical_k_masks_and_losses():
    gen = torch.Generator().manual_seed(21)
    cases = 0
    for trial in range(60):
        student, labels = _random_case(gen, trial)
        teacher = student + refs.make_logits('flat', *student.shape, gen) / 8
        tau = [0.01, 0.3, 0.5, 0.93, 0.999, 1.0][trial % 6]
        temp = [1.0, 4.0][trial % 2]
        for kw in (dict(k_mode='per_sample'),
                   dict(k_mode='per_sample', force_target=True),
                   dict(k_mode='per_sample', rank_by='teacher',
                        force_target=True),
                   dict(k_mode='fixed', fixed_k=int(1 + trial * 97),
                        force_target=True),
                   dict(k_mode='batch', batch_k_step=7)):
            outs, grads, masks = [], [], []
            for sel in ('sort', 'band'):
                loss = GKDLoss(tau=tau, temperature=temp, lambda3=0.3,
                               selection=sel, **kw)
                masks.append(loss.primary_mask(student, teacher, labels))
                leaf = student.clone().requires_grad_(True)
                outs.append(loss(leaf, teacher, labels))
                outs[-1]['loss'].backward()
                grads.append(leaf.grad)
            assert torch.equal(masks[0], masks[1]), (trial, kw)
            for key in ('k_mean', 'k_std', 'k_min', 'k_max'):
                assert torch.equal(outs[0][key], outs[1][key]), (trial, key)
            # same groups; only the order of some float64 sums differs
            for key in outs[0]:
                assert torch.allclose(outs[0][key], outs[1][key],
                                      rtol=1e-9, atol=1e-12), (
                                          trial, key, kw,
                                          float(outs[0][key] - outs[1][key]))
            assert torch.allclose(grads[0], grads[1], rtol=1e-9,
                                  atol=1e-13), (trial, kw)
            if kw['k_mode'] == 'per_sample' and 'rank_by' not in kw:
                k = select_primary_k(student, tau, temp, selection='sort')
                assert torch.equal(
                    k, select_primary_k(student, tau, temp,
                                        selection='band'))
                if tau < 1:
                    assert torch.equal(k, refs.direct_k(student, tau, temp))
            cases += 1
    assert cases == 300


def test_ties_go_to_the_lower_class_index(selection):
    """Both paths break ties as a stable descending sort."""
    z = torch.zeros(2, 6000, dtype=F64)
    z[:, 100:200] = 1.0
    mask = primary_group_mask(z, torch.tensor([30, 150]),
                              selection=selection)
    assert mask[0, 100:130].all() and mask[0].sum() == 30
    assert mask[1, 100:200].all() and mask[1, :50].all()
    assert mask[1].sum() == 150
    # forced target replaces the k-th ranked class, i.e. the highest tied
    # index inside Phi
    labels = torch.tensor([5000, 150])
    forced = primary_group_mask(z, torch.tensor([30, 150]), labels,
                                selection=selection)
    assert forced[0, 5000] and not forced[0, 129] and forced[0].sum() == 30
    assert torch.equal(forced[1], mask[1])


def test_sort_path_has_no_host_syncs(monkeypatch):
    """The sort path never reads tensor values back into Python (no
    ``.item()``, ``bool()``, ``nonzero``, ``tolist``)."""
    from mmfacekd.models.losses.gkd.selection import batch_k, group_classes
    from mmfacekd.models.losses.gkd.softmax import softmax_stats
    gen = torch.Generator().manual_seed(22)
    logits = refs.make_logits('mixed', 5, 7000, gen)
    labels = torch.randint(7000, (5, ), generator=gen)
    stats = softmax_stats(logits, 2.0)
    reference = [group_classes(logits, stats, tau=0.9, gt_label=labels,
                               selection='band'),
                 group_classes(logits, stats, k=torch.full((5, ), 300),
                               gt_label=labels, selection='band')]

    def sync(*args, **kwargs):
        raise AssertionError('host sync')

    for name in ('__bool__', '__int__', '__float__', '__index__', 'item',
                 'tolist', 'nonzero', 'numpy'):
        monkeypatch.setattr(torch.Tensor, name, sync)
    monkeypatch.setattr(torch, 'nonzero', sync)
    outs = [group_classes(logits, stats, tau=0.9, gt_label=labels,
                          selection='sort'),
            group_classes(logits, stats, k=torch.full((5, ), 300),
                          gt_label=labels, selection='sort'),
            group_classes(logits, stats, tau=1.0, selection='sort')]
    k_batch = batch_k(logits, 0.9, 10)
    with pytest.raises(AssertionError, match='host sync'):  # patch works
        group_classes(logits, stats, tau=0.9, selection='band')
    monkeypatch.undo()
    for out, ref in zip(outs, reference):
        assert torch.equal(out.mask, ref.mask) and torch.equal(out.k, ref.k)
    assert outs[2].mask.all() and (outs[2].k == 7000).all()
    assert int(k_batch) == refs.authors_batch_k(logits, 0.9, 10)


def test_auto_selection():
    from mmfacekd.models.losses.gkd.selection import resolve_selection
    cpu = torch.zeros(2, 300)
    # measured: the band search pays only on CPU with many classes
    assert resolve_selection('auto', cpu) == 'sort'
    assert resolve_selection('auto', torch.zeros(2, 85742)) == 'band'
    assert resolve_selection('sort', cpu) == 'sort'
    assert resolve_selection('band', cpu) == 'band'
    meta = torch.empty(2, 85742, device='meta')  # any non-CPU device
    assert resolve_selection('auto', meta) == 'sort'
    with pytest.raises(ValueError):
        resolve_selection('x', cpu)
    with pytest.raises(ValueError):
        GKDLoss(selection='x')

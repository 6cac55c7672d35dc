r"""Partial FC: a margin-softmax head whose class centres are sharded over
the ranks, with an optional sampled subset of negative classes per step.

An Deng et al., *Partial FC: Training 10 Million Identities on a Single
Machine* (ICCVW 2021) / *Killing Two Birds with One Stone* (CVPR 2022).
Symbols: ``C`` classes, ``W`` ranks, ``C_r`` classes of rank ``r`` (layout
of :func:`~mmfacekd.models.utils.class_shard.class_shard`), sample rate
:math:`r \in (0, 1]`, global batch ``B`` (all ranks).

Per step every rank all-gathers the embeddings and labels of the global
batch, keeps every class of its shard that is a label of the batch (the
positives) plus random other classes (negatives) up to
:math:`\lfloor r \cdot C_r \rfloor` columns, computes the ``B x C_kept``
margin logits and the cross-entropy over all ranks' columns with the
softmax statistics reduced across ranks (:func:`sharded_logsumexp`), in
float32 even under autocast. :math:`r = 1` is plain model parallelism; one
rank with :math:`r = 1` is exactly :class:`MarginHead`.
"""
import math
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS

from ..utils import gather_no_grad, get_world_size
from ..utils.class_shard import class_shard, column_offsets, get_rank
from ..utils.dist_checks import check_batch_across_ranks
from ..utils.replicated import (
    gather_sharded_input,
    global_max,
    replicated_sum,
    sharded_logsumexp,
)
from .margin_head import MarginHead, combined_margin_cosine

#: rows of one init block: the initial head does not depend on the layout
INIT_BLOCK = 4096


def _mix_seed(*ints: int) -> int:
    """A 63-bit generator seed from a tuple of ints (NumPy SeedSequence)."""
    state = np.random.SeedSequence([int(i) % 2**63 for i in ints])
    return int(state.generate_state(1, np.uint64)[0] >> np.uint64(1))


def init_shard_normal_(weight: Tensor, start: int, std: float,
                       seed: int) -> Tensor:
    """Fill the rows ``[start, start + len(weight))`` of a virtual full
    ``(C, D)`` normal(0, std) matrix, generated in blocks of
    :data:`INIT_BLOCK` rows with a seed per block, so that the shards of any
    world size concatenate to the same full matrix."""
    rows, dim = weight.shape
    with torch.no_grad():
        for block in range(start // INIT_BLOCK,
                           (start + rows - 1) // INIT_BLOCK + 1):
            gen = torch.Generator().manual_seed(_mix_seed(seed, block))
            full = torch.randn(INIT_BLOCK, dim, generator=gen) * std
            lo = max(start, block * INIT_BLOCK)
            hi = min(start + rows, (block + 1) * INIT_BLOCK)
            weight[lo - start:hi - start] = full[lo - block * INIT_BLOCK:
                                                 hi - block * INIT_BLOCK]
    return weight


def _is_shard_size(rows: int, num_classes: int, max_world: int = 4096
                   ) -> bool:
    """Whether ``rows`` is the shard size of some rank of a world of 2 to
    ``max_world`` ranks over ``num_classes`` classes."""
    for world in range(2, min(num_classes, max_world) + 1):
        base, extra = divmod(num_classes, world)
        if rows == base or (extra and rows == base + 1):
            return True
    return False


def head_mismatch_fix(shape: Tuple[int, ...], num_classes: int,
                      in_channels: int) -> str:
    """Why a checkpoint tensor of ``shape`` is not the full
    ``(num_classes, in_channels)`` head, and the fix (for error messages)."""
    if len(shape) != 2:
        return 'not a (C, D) class-centre matrix.'
    rows, dim = shape
    if dim != in_channels:
        return (f'embedding size {dim}, the head has in_channels='
                f'{in_channels}: the checkpoint is of another network.')
    if rows < num_classes and _is_shard_size(rows, num_classes):
        return ('it looks like one rank\'s shard (a shard cannot be told '
                'apart from another rank\'s): merge the per-rank shards into '
                'one (C, D) tensor in rank order first '
                '(tools/misc/merge_partial_fc.py, or save with '
                'ShardedHeadCheckpointHook).')
    return (f'it holds {rows} classes: it was trained on another class '
            f'count. Set num_classes={rows} if the data set is the same, '
            'else load the backbone only (drop the head key, e.g. '
            'teacher_head_ckpt for a teacher).')


@MODELS.register_module()
class PartialFCHead(MarginHead):
    r"""Class-sharded margin head (Partial FC), a drop-in for
    :class:`MarginHead` (same margins ``(m1, m2, m3)``, same ``grad_mode``).

    .. math::
        \mathcal{L} = \frac{1}{B} \sum_{b=1}^{B} \Big(
        \log \sum_{r} \sum_{c \in S_r} e^{s \cos\theta'_{b,c}}
        - s \cos\theta'_{b, y_b} \Big)

    with :math:`S_r` the kept classes of rank ``r`` (all of its shard for
    ``sample_rate=1``) and :math:`\theta'` the margin angle. Every rank
    holds the same loss.

    Outputs of :meth:`get_logits` (rows = the global batch in rank order,
    columns = the kept classes of this rank, ascending): ``logits``,
    ``margin_logits`` (with labels), ``column_label`` (B, ) the label as an
    index into the columns of all ranks concatenated in rank order (what
    the sharded distillation losses of :mod:`mmfacekd.models.losses.sharded`
    read) and ``class_index`` (C_kept, ) the global class of each column.

    Gradients: the weight shard gets exactly the single-process gradient
    (it must not be averaged by DDP: it is flagged ``model_parallel`` and
    :class:`~mmfacekd.engine.FaceDistributedDataParallel` leaves it out);
    the local embeddings get ``W`` times theirs, which DDP's averaging of
    the backbone turns into the single-process gradient (the convention of
    :func:`~mmfacekd.models.utils.gather_with_grad`).

    Negative sampling RNG: at training step ``t`` (counted from 0, one per
    training call) rank ``r`` draws its negatives (uniformly, without
    replacement, from its classes that are not positives of the batch)
    with a ``torch.Generator`` seeded from ``(seed, r, t)`` through NumPy's
    ``SeedSequence``; ``seed`` defaults to ``torch.initial_seed()`` when
    the head first samples (MMEngine's ``randomness.seed``). Ranks draw
    independently; a run is deterministic given the seed and the world
    size. The whole sampling state is ``(seed, t)``, the same on every
    rank (:meth:`sampling_state`); ``ShardedHeadCheckpointHook`` saves it,
    so a resumed run draws the negatives of the uninterrupted one (on
    another world size the shards differ: it draws the ``(seed, r, t)``
    negatives of the new layout).

    Args:
        num_classes (int): Number of identities ``C`` (all ranks).
        in_channels (int): Embedding size. Defaults to 512.
        s (float): Scale. Defaults to 64.
        m1, m2, m3 (float): Combined margin (ArcFace: ``m2=0.5``; CosFace:
            ``m2=0, m3=0.4``). Defaults to 1.0, 0.5, 0.0.
        grad_mode (str): See :func:`combined_margin_cosine`.
            Defaults to 'straight_through'.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        sample_rate (float): :math:`r \in (0, 1]`: every rank keeps
            ``max(positives, floor(r * C_r))`` classes per training step
            (all of them in eval mode). Defaults to 1.0.
        seed (int, optional): Seed of the negative sampling.
            Defaults to None (``torch.initial_seed()``).
        init_cfg (dict, optional): Defaults to normal(std=0.01) weights
            drawn so that the full head is the same for any world size.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int = 512,
                 *,
                 sample_rate: float = 1.0,
                 seed: Optional[int] = None,
                 **kwargs) -> None:
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f'PartialFCHead: sample_rate must be in (0, 1], '
                             f'got {sample_rate}')
        self.sample_rate = float(sample_rate)
        self.seed = seed
        self._resolved_seed: Optional[int] = seed
        self._step = 0  # training draws so far (the sampling state)
        super().__init__(num_classes, in_channels, **kwargs)

    def _build_weight(self) -> nn.Parameter:
        """This rank's shard ``(C_r, D)`` of the class centres."""
        self.shard = class_shard(self.num_classes, get_world_size(),
                                 get_rank())
        weight = nn.Parameter(torch.empty(self.shard.size, self.in_channels))
        weight.model_parallel = True  # not averaged by DDP
        init_shard_normal_(weight, self.shard.start, 0.01,
                           torch.initial_seed())
        return weight

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """Load the full ``(C, D)`` head by taking this rank's rows (e.g. a
        teacher or a checkpoint from any world size); a tensor of another
        shape is refused (a per-rank shard cannot be told apart from
        another rank's)."""
        key = prefix + 'weight'
        weight = state_dict.get(key)
        if weight is not None:
            shard = self.shard
            if tuple(weight.shape) != (self.num_classes, self.in_channels):
                raise ValueError(
                    f'PartialFCHead (rank {shard.rank} of '
                    f'{shard.world_size}): checkpoint key {key!r} has shape '
                    f'{tuple(weight.shape)}, expected the full head '
                    f'({self.num_classes}, {self.in_channels}); '
                    + head_mismatch_fix(tuple(weight.shape),
                                        self.num_classes, self.in_channels))
            state_dict[key] = weight[shard.start:shard.stop]
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @property
    def num_sample(self) -> int:
        """Classes kept per rank and step (before adding positives)."""
        return max(1, int(math.floor(self.sample_rate * self.shard.size)))

    def _sampling_seed(self) -> int:
        if self._resolved_seed is None:
            self._resolved_seed = int(torch.initial_seed())
        return self._resolved_seed

    def sampling_state(self) -> Dict[str, int]:
        """``seed``, ``step`` (training draws so far) and ``world_size``:
        what the next draws depend on besides the rank (the same dict on
        every rank)."""
        return dict(seed=self._sampling_seed(), step=self._step,
                    world_size=self.shard.world_size)

    def load_sampling_state(self, state: Dict[str, int]) -> None:
        """Continue the draws of :meth:`sampling_state` ``state``."""
        self._resolved_seed = int(state['seed'])
        self._step = int(state['step'])

    def _sampling_generator(self) -> torch.Generator:
        """The generator of this rank and step (see the class doc)."""
        return torch.Generator().manual_seed(
            _mix_seed(self._sampling_seed(), self.shard.rank, self._step))

    def sample_classes(self, labels: Tensor) -> Optional[Tensor]:
        """The local classes kept for a global batch with ``labels``:
        sorted local indices, or None when all are kept. Every positive is
        kept; negatives are drawn as the class docstring says."""
        if self.sample_rate >= 1.0 or not self.training:
            return None
        shard = self.shard
        generator = self._sampling_generator()
        self._step += 1  # every rank, every training step
        own = (labels >= shard.start) & (labels < shard.stop)
        positive = torch.unique(labels[own] - shard.start)
        missing = self.num_sample - positive.numel()
        if missing <= 0:
            return positive
        is_neg = torch.ones(shard.size, dtype=torch.bool,
                            device=labels.device)
        is_neg[positive] = False
        negative = is_neg.nonzero().squeeze(1)
        order = torch.randperm(negative.numel(), generator=generator)
        picked = negative[order[:missing].to(negative.device)]
        return torch.cat([positive, picked]).sort().values

    def _gather(self, feats: Tensor, gt_label: Optional[Tensor]):
        labels = None if gt_label is None else gt_label.reshape(-1).long()
        check_batch_across_ranks(
            'PartialFCHead', feats.size(0), labels, self.num_classes,
            feats.device, rows_fix='Use a sampler that gives every rank '
            'full batches (DefaultSampler with round_up=True, or drop_last '
            'in the dataloader).')
        x = gather_sharded_input(feats)
        if labels is not None:
            labels = gather_no_grad(labels)
        return x, labels

    def forward(self, feats: Tensor) -> Tensor:
        """Cosine (B_global, C_r) between the gathered embeddings and the
        local class centres (matmul in the autocast dtype, result
        float32)."""
        x, _ = self._gather(feats, None)
        return F.linear(F.normalize(x), F.normalize(self.weight)).float()

    def get_logits(self, feats: Tensor,
                   gt_label: Optional[Tensor] = None,
                   class_index: Optional[Tensor] = None
                   ) -> Dict[str, Tensor]:
        """``logits`` (s·cos) on the kept local classes for the global batch
        and, with labels, ``margin_logits``, ``column_label`` and
        ``class_index`` (see the class docstring).

        ``class_index`` (sorted global classes of this rank's shard, e.g.
        the ``class_index`` of a student's sharded head) fixes the columns
        instead of sampling them: a sharded teacher head then gives its
        logits on the student's sampled support.
        """
        x, labels = self._gather(feats, gt_label)
        if class_index is not None:
            index = self._local_index(class_index)
        else:
            index = None if labels is None else self.sample_classes(labels)
        weight = self.weight if index is None else self.weight[index]
        cosine = F.linear(F.normalize(x), F.normalize(weight)).float()
        out = dict(logits=self.s * cosine)
        shard = self.shard
        if index is None:
            index = torch.arange(shard.size, device=cosine.device)
        out['class_index'] = index + shard.start
        if labels is None:
            return out
        wanted = labels - shard.start
        local = torch.searchsorted(index, wanted.clamp(0)).clamp(
            max=index.numel() - 1)
        # a label of another shard, or not among the given class_index
        own = (labels >= shard.start) & (labels < shard.stop) \
            & (index[local] == wanted)
        local = torch.where(own, local, torch.full_like(local, -1))
        with torch.autocast(cosine.device.type, enabled=False):
            out['margin_logits'] = self.s * combined_margin_cosine(
                cosine, local, self.m1, self.m2, self.m3, self.grad_mode)
        offset = column_offsets(index.numel(), cosine.device)[shard.rank]
        column = torch.where(own, local + offset, torch.full_like(local, -1))
        out['column_label'] = global_max(column)
        return out

    def _local_index(self, class_index: Tensor) -> Tensor:
        shard = self.shard
        local = class_index.reshape(-1).long() - shard.start
        if local.numel() and (int(local.min()) < 0
                              or int(local.max()) >= shard.size
                              or bool((local[1:] <= local[:-1]).any())):
            raise ValueError(
                f'PartialFCHead (rank {shard.rank}): class_index must be '
                f'sorted classes of this rank\'s shard [{shard.start}, '
                f'{shard.stop}); pass the `class_index` of a head with the '
                'same num_classes and world size')
        return local

    def loss_by_logits(self, logits: Dict[str, Tensor],
                       gt_label: Optional[Tensor] = None
                       ) -> Dict[str, Tensor]:
        """Cross-entropy over the columns of all ranks on the margin logits
        plus top-1 accuracy over the kept classes (logged).

        ``gt_label`` is not used: the gathered labels are
        ``logits['column_label']``."""
        if 'column_label' not in logits:
            raise KeyError('PartialFCHead.loss_by_logits needs the dict of '
                           'PartialFCHead.get_logits(feats, gt_label)')
        label = logits['column_label']
        margin = logits['margin_logits'].float()
        with torch.autocast(margin.device.type, enabled=False):
            offset = column_offsets(margin.size(1),
                                    margin.device)[self.shard.rank]
            local = label - offset
            own = (local >= 0) & (local < margin.size(1))
            idx = local.clamp(0, margin.size(1) - 1).unsqueeze(1)

            def target(z: Tensor) -> Tensor:
                picked = z.gather(1, idx).squeeze(1)
                return replicated_sum(
                    torch.where(own, picked, torch.zeros_like(picked)))

            valid = label >= 0
            nll = sharded_logsumexp(margin) - target(margin)
            loss = nll[valid].mean() if bool(valid.any()) \
                else margin.sum() * 0
            with torch.no_grad():
                plain = logits['logits'].float()
                best = global_max(plain.amax(dim=1))
                acc = (target(plain) >= best)[valid].float()
                acc = acc.mean() if acc.numel() else loss.new_zeros(())
        return dict(loss_cls=self.loss_weight * loss, accuracy=acc)

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, shard=[{self.shard.start}, '
                f'{self.shard.stop}) of rank {self.shard.rank}/'
                f'{self.shard.world_size}, sample_rate={self.sample_rate}')

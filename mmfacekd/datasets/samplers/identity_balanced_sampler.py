"""Identity-balanced (P×K) sampling for pair-based distillation (EKD).

EKD (Huang et al., CVPR 2022; ``docs/papers.md`` §3) trains on batches that
mix ``num_random`` uniformly drawn images with ``num_ids`` (P) identities ×
``num_per_id`` (K) images each, so that every batch holds positive pairs.
The classification loss is computed on the random part only: with
``cls_loss_on='random_part'`` the sampler yields :class:`SampleIndex` es
whose metainfo flags each sample (``with_cls_loss``: True for the random
part, False for the P×K part); :class:`PackFaceInputs` puts the flag into
the data sample and :meth:`FaceRecognizer.loss_by_embedding` (the student's
loss, also inside :class:`FaceDistiller`) computes the CE over the flagged
samples only. No position in the batch is a convention between the sampler
and the model.

Config (the batch sampler checks that the two sizes agree)::

    train_dataloader = dict(
        batch_size=64,            # = num_random + num_ids * num_per_id
        drop_last=False,          # a batch_sampler excludes drop_last=True
        sampler=dict(type='IdentityBalancedSampler', num_random=32,
                     num_ids=8, num_per_id=4,
                     cls_loss_on='random_part'),  # CE on the random part only
        batch_sampler=dict(type='IdentityBalancedBatchSampler'))
"""
import math
from typing import Iterator, List, Optional, Sized

import numpy as np
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import BatchSampler, Sampler

from mmfacekd.registry import DATA_SAMPLERS

from .sample_index import SampleIndex, index_meta

__all__ = ['IdentityBalancedSampler', 'IdentityBalancedBatchSampler',
           'dataset_labels', 'check_index_meta_passes']


def dataset_labels(dataset: Sized) -> np.ndarray:
    """Labels of every index of ``dataset`` without decoding images.

    Uses ``dataset.get_gt_labels()`` when available (``MXRecordDataset``
    reads its identity records, ``FaceImageFolder`` its file list), else
    ``get_data_info(i)['gt_label']`` for every index.
    """
    if hasattr(dataset, 'get_gt_labels'):
        labels = np.asarray(dataset.get_gt_labels())
    elif hasattr(dataset, 'get_data_info'):
        labels = np.array([int(dataset.get_data_info(i)['gt_label'])
                           for i in range(len(dataset))])
    else:
        raise TypeError(
            f'{type(dataset).__name__} exposes neither get_gt_labels() nor '
            'get_data_info(); IdentityBalancedSampler needs the label of '
            'every index.')
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) != len(dataset):
        raise ValueError(f'{type(dataset).__name__}: {len(labels)} labels for '
                         f'{len(dataset)} samples')
    return labels


def check_index_meta_passes(dataset: Sized) -> None:
    """Raise unless ``dataset.get_data_info`` hands a :class:`SampleIndex`
    on as ``sample_idx`` with its metainfo (what :class:`PackFaceInputs`
    reads)."""
    probe = SampleIndex(0, with_cls_loss=False)
    info = (dataset.get_data_info(probe)
            if hasattr(dataset, 'get_data_info') else {})
    if index_meta(info.get('sample_idx')).get('with_cls_loss') is not False:
        raise TypeError(
            f"IdentityBalancedSampler(cls_loss_on='random_part'): "
            f'{type(dataset).__name__}.get_data_info(idx) does not return '
            'the index itself as `sample_idx`, so the per-sample '
            '`with_cls_loss` flags would not reach the model. Use a dataset '
            "that does (MMEngine's BaseDataset, MXRecordDataset, "
            "FaceImageFolder), or cls_loss_on='all'.")


@DATA_SAMPLERS.register_module()
class IdentityBalancedSampler(Sampler):
    """Per-rank batches of ``num_random`` random images + P×K images.

    Yields dataset indices in batch order: every consecutive run of
    ``batch_size = num_random + num_ids * num_per_id`` indices is one batch
    of this rank, laid out as ``[random part | id 1 × K | … | id P × K]``.
    Use it with :class:`IdentityBalancedBatchSampler`, which cuts the stream
    into exactly these batches and checks ``train_dataloader.batch_size``.

    Per epoch (a pure function of ``(seed, epoch)``, identical on all ranks):

    * **Random part.** One permutation of all images; step ``s`` gives the
      global slice ``[s·W·R, (s+1)·W·R)`` of it to the W ranks, ``R``
      images each, in rank order. No image appears twice in the random
      parts of one epoch, on any rank.
    * **Identity part.** Step ``s`` draws ``W·P`` distinct identities
      (uniformly, without replacement; independent across steps) and gives P
      of them to each rank, so the identities of one step are disjoint across
      ranks. Each rank then picks K images of each of its identities (its own
      random stream, seeded by ``(seed, epoch, rank)``): K distinct images
      when the identity has at least K, otherwise (``small_ids='repeat'``,
      the EKD authors' choice) each of its images once and then repeats in a
      fresh random order up to K. ``small_ids='skip'`` never draws
      identities with fewer than K images.

    Epoch length (``epoch_length``):

    * ``'random_part'`` (default; the EKD authors' definition): the random
      parts of one epoch cover the dataset once over all ranks,
      ``len(dataset) // (W · num_random)`` batches per rank (the remainder
      of the permutation is dropped).
    * ``'dataset'``: ``len(dataset) // (W · batch_size)`` batches per rank,
      the same number of images per epoch as a ``DefaultSampler`` with the
      same batch size (for equal-budget comparisons); the random part then
      covers only the first ``num_batches · W · num_random`` images of the
      epoch's permutation.

    ``set_epoch`` (called by MMEngine's ``DistSamplerSeedHook``, also on
    resume) selects the epoch.

    Every index is a :class:`SampleIndex` with ``meta=dict(with_cls_loss=
    ...)``: True for every sample (``cls_loss_on='all'``), or True for the
    random part and False for the P×K part (``'random_part'``, EKD). With
    ``'random_part'`` the dataset must hand its index on as ``sample_idx``
    (checked once here): otherwise the flags would be lost silently.

    Args:
        dataset: A dataset with ``get_gt_labels()`` or ``get_data_info()``.
        num_random (int): R, random images per batch (>= 1). Defaults to 32.
        num_ids (int): P, identities per batch (>= 0). Defaults to 8.
        num_per_id (int): K, images per identity (>= 1). Defaults to 4.
        seed (int, optional): Shared by all ranks; a synchronised random seed
            when None (MMEngine passes the runner's seed). Defaults to None.
        small_ids (str): ``'repeat'`` or ``'skip'`` for identities with fewer
            than K images. Defaults to 'repeat'.
        epoch_length (str): ``'random_part'`` or ``'dataset'``.
            Defaults to 'random_part'.
        cls_loss_on (str): Which samples get the classification loss:
            ``'all'`` or ``'random_part'``. Defaults to 'all'.
    """

    def __init__(self,
                 dataset: Sized,
                 num_random: int = 32,
                 num_ids: int = 8,
                 num_per_id: int = 4,
                 seed: Optional[int] = None,
                 small_ids: str = 'repeat',
                 epoch_length: str = 'random_part',
                 cls_loss_on: str = 'all') -> None:
        if num_random < 1 or num_ids < 0 or num_per_id < 1:
            raise ValueError(
                'IdentityBalancedSampler needs num_random >= 1, num_ids >= 0 '
                f'and num_per_id >= 1; got num_random={num_random}, '
                f'num_ids={num_ids}, num_per_id={num_per_id}')
        if small_ids not in ('repeat', 'skip'):
            raise ValueError(f"small_ids must be 'repeat' or 'skip', got "
                             f'{small_ids!r}')
        if epoch_length not in ('random_part', 'dataset'):
            raise ValueError("epoch_length must be 'random_part' or "
                             f"'dataset', got {epoch_length!r}")
        if cls_loss_on not in ('all', 'random_part'):
            raise ValueError("cls_loss_on must be 'all' or 'random_part', got "
                             f'{cls_loss_on!r}')
        self.rank, self.world_size = get_dist_info()
        self.dataset = dataset
        self.num_random = int(num_random)
        self.num_ids = int(num_ids)
        self.num_per_id = int(num_per_id)
        self.small_ids = small_ids
        self.epoch_length = epoch_length
        self.cls_loss_on = cls_loss_on
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.epoch = 0

        labels = dataset_labels(dataset)
        if cls_loss_on != 'all' and len(labels):
            check_index_meta_passes(dataset)
        self.num_samples_total = len(labels)
        # images of identity u: self._order[self._starts[u]:... + counts[u]]
        self._order = np.argsort(labels, kind='stable')
        _, self._starts, self._counts = np.unique(
            labels[self._order], return_index=True, return_counts=True)
        eligible = np.arange(len(self._counts))
        if small_ids == 'skip':
            eligible = eligible[self._counts >= self.num_per_id]
        self._eligible = eligible
        needed = self.world_size * self.num_ids
        if needed > len(eligible):
            raise ValueError(
                f'IdentityBalancedSampler: {self.world_size} rank(s) x '
                f'num_ids={self.num_ids} needs {needed} distinct identities '
                f'per step, but the dataset has only {len(eligible)} usable '
                f"identities (small_ids={small_ids!r}).")
        per_batch = (self.num_random if epoch_length == 'random_part'
                     else self.batch_size)
        self.num_batches = self.num_samples_total // (self.world_size
                                                      * per_batch)
        if self.num_batches < 1:
            raise ValueError(
                f'IdentityBalancedSampler: {self.num_samples_total} images '
                f'give no complete batch for {self.world_size} rank(s) with '
                f'epoch_length={epoch_length!r} (num_random='
                f'{self.num_random}, batch_size={self.batch_size}).')

    @property
    def batch_size(self) -> int:
        """Per-rank batch size ``num_random + num_ids * num_per_id``."""
        return self.num_random + self.num_ids * self.num_per_id

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def _identity_images(self, ident: int, rng: np.random.Generator
                         ) -> np.ndarray:
        start, count = self._starts[ident], self._counts[ident]
        images = self._order[start:start + count]
        k = self.num_per_id
        if count >= k:
            return images[rng.choice(count, k, replace=False)]
        reps = math.ceil(k / count)
        picks = np.concatenate([rng.permutation(count) for _ in range(reps)])
        return images[picks[:k]]

    def batches(self) -> Iterator[List[int]]:
        """This rank's batches of the current epoch, as index lists."""
        world, rank = self.world_size, self.rank
        r, p = self.num_random, self.num_ids
        perm = np.random.default_rng([self.seed, self.epoch, 0]).permutation(
            self.num_samples_total)
        rng_ids = np.random.default_rng([self.seed, self.epoch, 1])
        rng_img = np.random.default_rng([self.seed, self.epoch, 2, rank])
        pxk_cls = self.cls_loss_on == 'all'
        for step in range(self.num_batches):
            start = (step * world + rank) * r
            batch = [SampleIndex(i, with_cls_loss=True)
                     for i in perm[start:start + r].tolist()]
            if p:
                ids = rng_ids.choice(len(self._eligible), world * p,
                                     replace=False)
                for u in self._eligible[ids[rank * p:(rank + 1) * p]]:
                    batch += [SampleIndex(i, with_cls_loss=pxk_cls) for i in
                              self._identity_images(int(u), rng_img).tolist()]
            yield batch

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch


@DATA_SAMPLERS.register_module()
class IdentityBalancedBatchSampler(BatchSampler):
    """Cuts an :class:`IdentityBalancedSampler` into its batches.

    MMEngine's Runner builds it with the dataloader's ``sampler`` and
    ``batch_size``; a mismatch between ``train_dataloader.batch_size`` and
    ``num_random + num_ids * num_per_id`` of the sampler is an error (the
    random part would otherwise drift inside the batches). ``set_epoch``
    reaches the sampler through ``batch_sampler.sampler``
    (``DistSamplerSeedHook``). The dataloader config must not set
    ``drop_last=True`` (PyTorch forbids it together with a batch sampler);
    every batch is complete anyway.

    Args:
        sampler (IdentityBalancedSampler): The index sampler.
        batch_size (int): ``train_dataloader.batch_size``.
    """

    def __init__(self, sampler: IdentityBalancedSampler,
                 batch_size: int) -> None:
        if not isinstance(sampler, IdentityBalancedSampler):
            raise TypeError(
                'IdentityBalancedBatchSampler needs train_dataloader.sampler '
                f'= IdentityBalancedSampler, got {type(sampler).__name__}')
        if batch_size != sampler.batch_size:
            raise ValueError(
                f'train_dataloader.batch_size={batch_size} does not match '
                'the identity-balanced batch train_dataloader.sampler.'
                f'num_random + num_ids * num_per_id = {sampler.num_random} + '
                f'{sampler.num_ids} * {sampler.num_per_id} = '
                f'{sampler.batch_size}; set them consistently.')
        super().__init__(sampler, batch_size, drop_last=True)

    def __iter__(self) -> Iterator[List[int]]:
        return self.sampler.batches()

    def __len__(self) -> int:
        return self.sampler.num_batches

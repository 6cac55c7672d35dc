"""Class prototypes of a teacher: the classifier insightface releases lack."""
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from mmengine.dist import all_reduce, get_world_size


@torch.no_grad()
def compute_class_prototypes(model, dataloader, num_classes: int,
                             progress: Optional[Callable[[int], None]] = None
                             ) -> torch.Tensor:
    """Mean L2-normalized embedding per identity, L2-normalized again.

    ``model`` is a :class:`FaceRecognizer` (eval mode is set here); every
    image is embedded once without flip. In a distributed run each rank
    embeds its shard and the per-class sums and counts are all-reduced, so
    every rank returns the same (num_classes, D) tensor.

    Raises:
        ValueError: if an identity has no image (its prototype is undefined).
    """
    model.eval()
    sums, counts = None, torch.zeros(num_classes, dtype=torch.float64)
    for data in dataloader:
        data = model.data_preprocessor(data, False)
        emb = F.normalize(model.extract_feat(data['inputs']).double())
        labels = torch.cat([ds.gt_label.reshape(-1)
                            for ds in data['data_samples']]).cpu()
        if sums is None:
            sums = torch.zeros(num_classes, emb.shape[1], dtype=torch.float64)
        sums.index_add_(0, labels, emb.cpu())
        counts.index_add_(0, labels,
                          torch.ones(len(labels), dtype=torch.float64))
        if progress is not None:
            progress(len(labels))
    if get_world_size() > 1:
        all_reduce(sums)
        all_reduce(counts)
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel():
        raise ValueError(
            f'{empty.numel()} identities have no image (first: '
            f'{empty[:5].tolist()}); check num_classes against the data set.')
    return F.normalize(sums / counts[:, None]).float()

"""Verification pair sets stored as insightface ``.bin`` pickles."""
import os.path as osp
import pickle
from typing import List, Optional, Sequence

from mmengine.dataset import BaseDataset

from mmfacekd.registry import DATASETS


def load_verification_bin(path: str):
    """Load ``(bins, issame_list)`` from a ``.bin`` file, validating its shape."""
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'Verification set {path} not found. insightface ships lfw.bin, '
            'cfp_fp.bin, agedb_30.bin, calfw.bin, cplfw.bin inside its '
            'training-set archives (e.g. faces_emore); copy them next to '
            'train.rec or fix `ann_file`.')
    try:
        with open(path, 'rb') as f:
            bins, issame = pickle.load(f, encoding='bytes')
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f'{path} is not a valid verification .bin (a pickle of '
            f'(list of encoded images, list of bools)): {type(e).__name__}: '
            f'{e}. Re-download or regenerate the file.') from e
    bins, issame = list(bins), [bool(x) for x in issame]
    if len(bins) != 2 * len(issame):
        raise ValueError(f'{path}: {len(bins)} images for {len(issame)} pairs; '
                         'a .bin must hold exactly 2 images per pair.')
    return bins, issame


@DATASETS.register_module()
class VerificationBinDataset(BaseDataset):
    """One verification set (LFW, CFP-FP, AgeDB-30, …) from a ``.bin`` file.

    Image ``2i`` and ``2i+1`` form pair ``i``. Every item carries
    ``set_name``, ``sample_idx`` (image index in the set) and ``pair_label``
    so :class:`VerificationMetric` can rebuild the pairs after a
    (distributed) evaluation, whatever the batch boundaries. Several sets
    are evaluated in one val loop by concatenating datasets
    (``ConcatDataset``); metric keys are ``<set_name>/accuracy`` etc.

    Args:
        ann_file (str): Path of the ``.bin`` (relative to ``data_root``).
        set_name (str, optional): Metric prefix; defaults to the file stem.
        pipeline (list): Transforms (start with ``LoadFaceImage``).
    """
    METAINFO: dict = dict()

    def __init__(self, ann_file: str, set_name: Optional[str] = None,
                 pipeline: Sequence = (), data_root: str = '',
                 metainfo: Optional[dict] = None, **kwargs) -> None:
        self.set_name = set_name or osp.splitext(osp.basename(ann_file))[0]
        kwargs.setdefault('test_mode', True)
        super().__init__(ann_file=ann_file, data_root=data_root,
                         pipeline=list(pipeline), metainfo=metainfo,
                         **kwargs)

    def load_data_list(self) -> List[dict]:
        bins, issame = load_verification_bin(self.ann_file)
        return [
            dict(img_bytes=b, sample_idx=i, pair_label=issame[i // 2],
                 set_name=self.set_name,
                 img_source=f'{self.ann_file} image {i}')
            for i, b in enumerate(bins)
        ]

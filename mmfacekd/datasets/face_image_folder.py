"""Face training set as one folder per identity."""
import os
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
from mmengine.dataset import BaseDataset

from mmfacekd.registry import DATASETS

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


@DATASETS.register_module()
class FaceImageFolder(BaseDataset):
    """``data_root/<identity>/<image>``; identities sorted by name → labels.

    Args:
        data_root (str): Root folder with one sub-folder per identity.
        pipeline (list): Transforms (start with ``LoadFaceImage``).
        extensions (tuple): Image file extensions (case-insensitive).
    """
    METAINFO: dict = dict()

    def __init__(self, data_root: str, pipeline: Sequence = (),
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 metainfo: Optional[dict] = None, **kwargs) -> None:
        self.extensions = tuple(e.lower() for e in extensions)
        self._gt_labels: Optional[np.ndarray] = None
        super().__init__(ann_file='', data_root=data_root,
                         pipeline=list(pipeline), metainfo=metainfo, **kwargs)

    def load_data_list(self) -> List[dict]:
        if not osp.isdir(self.data_root):
            raise FileNotFoundError(
                f'FaceImageFolder root {self.data_root} does not exist; it '
                'must hold one sub-folder of images per identity.')
        identities = sorted(d.name for d in os.scandir(self.data_root)
                            if d.is_dir())
        data_list = []
        for label, name in enumerate(identities):
            folder = osp.join(self.data_root, name)
            for fname in sorted(os.listdir(folder)):
                if fname.lower().endswith(self.extensions):
                    path = osp.join(folder, fname)
                    data_list.append(dict(img_path=path, gt_label=label,
                                          img_source=path))
        if not data_list:
            raise FileNotFoundError(
                f'FaceImageFolder found no images with extensions '
                f'{self.extensions} under {self.data_root}/<identity>/.')
        self._metainfo['classes'] = identities
        self._metainfo['num_classes'] = len(identities)
        return data_list

    @property
    def num_classes(self) -> int:
        return self._metainfo['num_classes']

    def _serialize_data(self):
        # keep the labels (final data list, before serialization) so that
        # get_gt_labels needs no per-item deserialization
        self._gt_labels = np.array([d['gt_label'] for d in self.data_list],
                                   dtype=np.int64)
        return super()._serialize_data()

    def get_gt_labels(self) -> np.ndarray:
        """Labels of all images, in index order (no image is read)."""
        if self._gt_labels is None or len(self._gt_labels) != len(self):
            self._gt_labels = np.array(
                [self.get_data_info(i)['gt_label'] for i in range(len(self))],
                dtype=np.int64)
        return self._gt_labels

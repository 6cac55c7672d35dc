"""IJB-B / IJB-C images in insightface's evaluation bundle layout."""
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
from mmengine.dataset import BaseDataset

from mmfacekd.registry import DATASETS

__all__ = ['IJBDataset']


@DATASETS.register_module()
class IJBDataset(BaseDataset):
    """The images of an IJB-B / IJB-C 1:1 verification set.

    Layout (insightface's ``IJB_release`` bundle, docs/formats.md §3)::

        <data_root>/loose_crop/<image>.jpg
        <data_root>/meta/<name>_name_5pts_score.txt
            # image x1 y1 .. x5 y5 score
        <data_root>/meta/<name>_face_tid_mid.txt
            # image template_id media_id
        <data_root>/meta/<name>_template_pair_label.txt  # t1 t2 label

    The two per-image files must list the same images in the same order;
    the line index is the image's ``sample_idx``. Items carry ``img_path``,
    ``img_name``, ``img_source`` (file and line, for error messages),
    ``landmarks`` (5, 2), ``face_score``, ``template_id``, ``media_id``,
    ``set_name`` and ``eval_protocol='ijb'``; the pipeline aligns each image
    with :class:`AlignFace` before packing.

    The pair list is the metric's business but the dataset's file: every
    packed sample's metainfo carries ``pair_file`` (the path of
    ``meta/<name>_template_pair_label.txt``, when it exists), which
    :class:`IJBMetric` reads, so a config names the bundle once — this works
    inside a ``ConcatDataset`` too (whose ``metainfo`` is only its first
    part's, and whose parts must share metainfo keys — hence not there).

    Args:
        data_root (str): The bundle folder, e.g. ``data/ijb/IJBC``.
        name (str): File prefix of the meta files (``'ijbc'``/``'ijbb'``),
            also the set name unless ``set_name`` is given.
            Defaults to 'ijbc'.
        set_name (str, optional): Metric prefix. Defaults to ``name``.
        img_dir (str): Image folder under ``data_root``.
            Defaults to 'loose_crop'.
        check_files (bool): Check every image file exists when the dataset
            is built. Defaults to True.
        pipeline (list): Transforms.
    """
    METAINFO: dict = dict()

    def __init__(self, data_root: str, name: str = 'ijbc',
                 set_name: Optional[str] = None, img_dir: str = 'loose_crop',
                 check_files: bool = True, pipeline: Sequence = (),
                 **kwargs) -> None:
        self.name = name
        self.set_name = set_name or name
        self.img_dir = img_dir
        self.check_files = check_files
        kwargs.setdefault('test_mode', True)
        super().__init__(ann_file='', data_root=data_root,
                         pipeline=list(pipeline), **kwargs)

    @property
    def pair_file(self) -> Optional[str]:
        """``meta/<name>_template_pair_label.txt`` if it exists."""
        if not hasattr(self, '_pair_file'):
            path = self._meta('template_pair_label')
            self._pair_file = path if osp.isfile(path) else None
        return self._pair_file

    def prepare_data(self, idx: int):
        """The pipeline's output, with ``pair_file`` in the sample meta."""
        data = super().prepare_data(idx)
        sample = data.get('data_samples') if isinstance(data, dict) else None
        if sample is not None and hasattr(sample, 'set_metainfo') and \
                self.pair_file is not None:
            sample.set_metainfo(dict(pair_file=self.pair_file))
        return data

    def _meta(self, kind: str) -> str:
        return osp.join(self.data_root, 'meta', f'{self.name}_{kind}.txt')

    @staticmethod
    def _lines(path: str) -> List[List[str]]:
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'{path}: IJB meta file not found; data_root must hold '
                'loose_crop/ and meta/ as in insightface\'s IJB bundle, and '
                '`name` must be the file prefix (ijbb or ijbc).')
        lines = []
        with open(path, 'rb') as f:
            for i, raw in enumerate(f, 1):
                try:
                    line = raw.decode('utf-8')
                except UnicodeDecodeError:
                    raise ValueError(
                        f'{path}, line {i}: not UTF-8 text ({raw[:60]!r}); '
                        'the meta file is corrupt, re-download the IJB '
                        'bundle.') from None
                if line.strip():
                    lines.append(line.split())
        return lines

    def load_data_list(self) -> List[dict]:
        pts_file = self._meta('name_5pts_score')
        tid_file = self._meta('face_tid_mid')
        pts_lines, tid_lines = self._lines(pts_file), self._lines(tid_file)
        if len(pts_lines) != len(tid_lines):
            raise ValueError(
                f'{pts_file} has {len(pts_lines)} lines but {tid_file} has '
                f'{len(tid_lines)}; both list every image once, in the same '
                'order.')
        items = []
        for i, (p, t) in enumerate(zip(pts_lines, tid_lines)):
            if len(p) != 12:
                raise ValueError(
                    f'{pts_file}, line {i + 1}: expected 12 fields (image, '
                    f'10 landmark coordinates, face score), got {len(p)}.')
            if len(t) != 3:
                raise ValueError(
                    f'{tid_file}, line {i + 1}: expected 3 fields (image, '
                    f'template id, media id), got {len(t)}.')
            if p[0] != t[0]:
                raise ValueError(
                    f'{pts_file} and {tid_file}, line {i + 1}: image names '
                    f'differ ({p[0]!r} vs {t[0]!r}); the files must list the '
                    'same images in the same order.')
            try:
                values = np.array(p[1:], np.float32)
                tid, mid = int(t[1]), int(t[2])
            except ValueError:
                raise ValueError(
                    f'{pts_file} / {tid_file}, line {i + 1}: non-numeric '
                    f'landmark, score or id ({p[1:]}, {t[1:]}).') from None
            path = osp.join(self.data_root, self.img_dir, p[0])
            if self.check_files and not osp.isfile(path):
                raise FileNotFoundError(
                    f'{pts_file}, line {i + 1}: image {path} does not exist; '
                    f'the images belong in {self.img_dir}/.')
            items.append(dict(
                img_path=path, img_name=p[0],
                img_source=f'{pts_file}, line {i + 1} ({p[0]})',
                landmarks=values[:10].reshape(5, 2), face_score=values[10],
                template_id=tid, media_id=mid, sample_idx=i,
                set_name=self.set_name, eval_protocol='ijb'))
        self._metainfo.update(num_images=len(items),
                              num_templates=len({d['template_id']
                                                 for d in items}))
        return items

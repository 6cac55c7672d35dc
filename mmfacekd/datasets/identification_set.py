"""Probe + distractor image sets for 1:N identification (MegaFace style)."""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.dataset import BaseDataset

from mmfacekd.registry import DATASETS

from .face_image_folder import IMG_EXTENSIONS
from .transforms.loading import decode_face_image

_PROBE_FORMS = '`<path> <identity>` or `<path> <identity> x1 y1 ... x5 y5`'
_DISTRACTOR_FORMS = '`<path>` or `<path> x1 y1 ... x5 y5`'


def _fail(where: str, problem: str, fix: str):
    raise ValueError(f'{where}: {problem}. {fix}')


@DATASETS.register_module()
class IdentificationDataset(BaseDataset):
    """A probe set with identities plus a distractor set, for
    :class:`IdentificationMetric` (MegaFace challenge 1 protocol).

    Two layouts (paths relative to ``data_root``):

    1. **List files** (``probe_list`` and ``distractor_list`` given): one
       image per line, whitespace separated, ``#`` comments and blank lines
       skipped; image paths are relative to ``data_root/img_prefix`` (or
       absolute) and must not contain spaces::

           # probe_list: <path> <identity> [x1 y1 ... x5 y5]
           facescrub/Aaron_Eckhart/Aaron_Eckhart_134.png Aaron_Eckhart
           # distractor_list: <path> [x1 y1 ... x5 y5]
           megaface/1/10/1000001.jpg

       The optional ten numbers are the five landmarks (left eye, right
       eye, nose, left and right mouth corner; image pixels) of an
       *unaligned* image; they are loaded as ``results['landmarks']``
       (5x2 float32) for an alignment transform placed after
       ``LoadFaceImage`` (e.g. ``AlignFace``). Without landmarks the images
       must already be aligned 112x112 crops.
    2. **Folders** (no list files): ``data_root/probe/<identity>/*.jpg``
       and ``data_root/distractors/**/*.jpg`` (any depth; folder names
       configurable), aligned crops.

    The real MegaFace/FaceScrub files are not redistributed. With the
    official downloads (FaceScrub probe images and the MegaFace 1M
    distractors with their landmark JSONs) align every face to 112x112 by
    the 5-point similarity transform onto the ArcFace template (or keep the
    landmarks in the lists), and write ``facescrub_probe.txt`` (``<path>
    <identity>``, 3,530 lines of 80 identities for challenge 1) and
    ``megaface_distractors.txt`` (``<path>``, 1M lines); use the devkit's
    cleaned ("no noise") lists to reproduce published numbers. See
    ``configs/_base_/datasets/megaface.py``.

    Items (``sample_idx`` = probes first, in list order, then distractors)
    carry ``img_path``, ``img_name`` (the path as listed), ``img_source``
    (list file and line, named by decoding errors), ``role``
    (``'probe'``/``'distractor'``), ``identity`` (int index of the sorted
    identity names; -1 for distractors), ``identity_name``, ``set_name``,
    ``eval_protocol='identification'`` and optionally ``landmarks``.

    Bad input — a wrong field count, a missing image, a probe identity with
    fewer than two images, non-numeric landmarks, an empty set, or (with
    ``check_images=True``, else when loaded) an undecodable image — raises
    one ``ValueError`` naming the file and line and the fix.

    Args:
        data_root (str): Root of the lists / folders.
        probe_list (str, optional): Probe list file.
        distractor_list (str, optional): Distractor list file.
        img_prefix (str): Folder of the listed image paths, relative to
            ``data_root``. Defaults to ``''``.
        set_name (str): Metric prefix. Defaults to ``'megaface'``.
        probe_dir (str): Folder layout: probe folder. Defaults to
            ``'probe'``.
        distractor_dir (str): Folder layout: distractor folder. Defaults to
            ``'distractors'``.
        extensions (tuple): Image extensions of the folder layout.
        check_files (bool): Check that every listed image exists. Defaults
            to True (1M ``stat`` calls take a few seconds).
        check_images (bool): Decode every image once at construction.
            Defaults to False.
        pipeline (list): Transforms (start with ``LoadFaceImage``).
    """
    METAINFO: dict = dict()

    def __init__(self,
                 data_root: str = '',
                 probe_list: Optional[str] = None,
                 distractor_list: Optional[str] = None,
                 img_prefix: str = '',
                 set_name: str = 'megaface',
                 probe_dir: str = 'probe',
                 distractor_dir: str = 'distractors',
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 check_files: bool = True,
                 check_images: bool = False,
                 pipeline: Sequence = (),
                 metainfo: Optional[dict] = None,
                 **kwargs) -> None:
        if (probe_list is None) != (distractor_list is None):
            raise ValueError(
                'IdentificationDataset: give both probe_list and '
                'distractor_list (list layout) or neither (folder layout '
                f'{probe_dir}/<identity>/*.jpg + {distractor_dir}/**/*.jpg).')
        self.probe_list = self._under(data_root, probe_list)
        self.distractor_list = self._under(data_root, distractor_list)
        self.img_root = self._under(data_root, img_prefix) or ''
        self.set_name = set_name
        self.probe_dir, self.distractor_dir = probe_dir, distractor_dir
        self.extensions = tuple(e.lower() for e in extensions)
        self.check_files, self.check_images = check_files, check_images
        kwargs.setdefault('test_mode', True)
        super().__init__(ann_file='', data_root=data_root,
                         pipeline=list(pipeline), metainfo=metainfo,
                         **kwargs)

    @staticmethod
    def _under(root: str, path: Optional[str]) -> Optional[str]:
        if path is None:
            return None
        return path if osp.isabs(path) or not root else osp.join(root, path)

    # ------------------------------------------------------------------
    # parsing
    # ------------------------------------------------------------------
    @staticmethod
    def _landmarks(fields: List[str], where: str) -> np.ndarray:
        try:
            lms = np.array([float(v) for v in fields], np.float32)
        except ValueError:
            _fail(where, f'landmarks {" ".join(fields)!r} are not numbers',
                  'Write ten numbers x1 y1 ... x5 y5 (left eye, right eye, '
                  'nose, left and right mouth corner) or none.')
        if not np.isfinite(lms).all():
            _fail(where, 'landmarks contain NaN/Inf',
                  'Write finite pixel coordinates.')
        return lms.reshape(5, 2)

    def _read_list(self, path: str, probe: bool) -> List[dict]:
        if not osp.isfile(path):
            raise ValueError(
                f'{path}: {"probe" if probe else "distractor"} list not '
                'found. Fix `probe_list`/`distractor_list` (relative to '
                '`data_root`) or write the list (see the '
                'IdentificationDataset docstring).')
        n_plain, forms = (2, _PROBE_FORMS) if probe else (1,
                                                         _DISTRACTOR_FORMS)
        items = []
        with open(path, 'rb') as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    fields = raw.decode('utf-8').split()
                except UnicodeDecodeError:
                    fields = None
                if fields is None:
                    _fail(f'{path} line {lineno}',
                          f'not UTF-8 text ({raw[:60]!r})',
                          'Write the list as UTF-8 text.')
                if not fields or fields[0].startswith('#'):
                    continue
                where = f'{path} line {lineno}'
                if len(fields) not in (n_plain, n_plain + 10):
                    _fail(where, f'{len(fields)} fields',
                          f'Expected {forms} ({n_plain} or {n_plain + 10} '
                          'whitespace-separated fields; paths must not '
                          'contain spaces).')
                item = dict(img_name=fields[0], img_source=where,
                            img_path=self._resolve(fields[0]))
                if probe:
                    item['identity_name'] = fields[1]
                if len(fields) > n_plain:
                    item['landmarks'] = self._landmarks(fields[n_plain:],
                                                        where)
                if self.check_files and not osp.isfile(item['img_path']):
                    _fail(where, f'image {fields[0]} not found (looked for '
                          f'{item["img_path"]})',
                          'Fix the path, or set `data_root`/`img_prefix` so '
                          'that listed paths resolve.')
                items.append(item)
        if not items:
            _fail(path, f'no {"probe" if probe else "distractor"} images',
                  f'Write one image per line: {forms}.')
        return items

    def _resolve(self, rel: str) -> str:
        return rel if osp.isabs(rel) else osp.join(self.img_root, rel)

    def _images_in(self, folder: str, recursive: bool) -> List[str]:
        found = []
        for dirpath, dirnames, files in os.walk(folder):
            dirnames.sort()
            found.extend(
                osp.join(dirpath, f) for f in sorted(files)
                if f.lower().endswith(self.extensions))
            if not recursive:
                break
        return found

    def _read_folders(self) -> Tuple[List[dict], List[dict]]:
        root = self.data_root
        pdir = osp.join(root, self.probe_dir)
        ddir = osp.join(root, self.distractor_dir)
        for d in (pdir, ddir):
            if not osp.isdir(d):
                raise ValueError(
                    f'{d}: folder not found. The folder layout needs '
                    f'{self.probe_dir}/<identity>/*.jpg and '
                    f'{self.distractor_dir}/**/*.jpg under data_root '
                    f'({root!r}); or give probe_list and distractor_list.')
        probes = []
        for name in sorted(e.name for e in os.scandir(pdir) if e.is_dir()):
            for path in self._images_in(osp.join(pdir, name), False):
                probes.append(dict(img_path=path, img_source=path,
                                   img_name=osp.relpath(path, root),
                                   identity_name=name))
        distractors = [
            dict(img_path=p, img_source=p, img_name=osp.relpath(p, root))
            for p in self._images_in(ddir, True)
        ]
        if not probes:
            _fail(pdir, 'no probe images',
                  f'Put each identity in {pdir}/<identity>/ with at least two '
                  f'images ({", ".join(self.extensions)}).')
        if not distractors:
            _fail(ddir, 'no distractor images',
                  f'Put the distractor images anywhere below {ddir}/.')
        return probes, distractors

    # ------------------------------------------------------------------
    def load_data_list(self) -> List[dict]:
        if self.probe_list is not None:
            probes = self._read_list(self.probe_list, True)
            distractors = self._read_list(self.distractor_list, False)
        else:
            probes, distractors = self._read_folders()
        counts: Dict[str, List[dict]] = {}
        for p in probes:
            counts.setdefault(p['identity_name'], []).append(p)
        for name, group in counts.items():
            if len(group) < 2:
                _fail(group[0]['img_source'],
                      f'probe identity {name!r} has only one image',
                      'Each probe is matched against another image of its '
                      'identity; remove this identity or add images of it.')
        names = sorted(counts)
        label = {n: i for i, n in enumerate(names)}
        common = dict(set_name=self.set_name,
                      eval_protocol='identification')
        data_list = []
        for p in probes:
            data_list.append(dict(p, role='probe',
                                  identity=label[p['identity_name']],
                                  **common))
        for d in distractors:
            data_list.append(dict(d, role='distractor', identity=-1,
                                  **common))
        for i, item in enumerate(data_list):
            item['sample_idx'] = i
            if self.check_images:
                with open(item['img_path'], 'rb') as f:
                    decode_face_image(f.read(), item['img_source'])
        self._metainfo.update(identities=names, num_probes=len(probes),
                              num_distractors=len(distractors),
                              set_name=self.set_name)
        return data_list

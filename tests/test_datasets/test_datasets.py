"""Datasets on files in the real formats, written on the fly."""
import os
import pickle

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmfacekd.datasets import (
    IndexedRecordReader,
    IndexedRecordWriter,
    IRHeader,
    MXRecordDataset,
    RecordIOError,
    VerificationBinDataset,
    pack_record,
    unpack_record,
)
from mmfacekd.datasets.transforms import ImageDecodeError
from mmfacekd.registry import DATASETS

PIPE = [dict(type='LoadFaceImage'), dict(type='PackFaceInputs')]


def test_record_dataset_header_convention(tiny_synth):
    ds = DATASETS.build(dict(type='MXRecordDataset', data_root=tiny_synth,
                             pipeline=PIPE))
    reader = IndexedRecordReader(os.path.join(tiny_synth, 'train.idx'),
                                 os.path.join(tiny_synth, 'train.rec'))
    header, _ = unpack_record(reader.read(0))
    a, b = int(header.label[0]), int(header.label[1])
    assert len(ds) == a - 1 and ds.num_classes == b - a == 12
    labels = ds.get_gt_labels()
    # identity records [start, end) agree with the image labels
    for ident in range(b - a):
        h, _ = unpack_record(reader.read(a + ident))
        start, end = int(h.label[0]), int(h.label[1])
        assert (labels[start - 1:end - 1] == ident).all()
    item = ds[3]
    assert item['inputs'].shape == (3, 112, 112)
    assert item['inputs'].dtype == torch.uint8
    assert item['data_samples'].gt_label.item() == labels[3]


def test_record_dataset_decodes_rgb(tmp_path):
    img = np.zeros((112, 112, 3), np.uint8)
    img[..., 0] = 200  # red in RGB
    ok, jpg = cv2.imencode('.png', cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    with IndexedRecordWriter(str(tmp_path / 'train.idx'),
                             str(tmp_path / 'train.rec')) as w:
        w.write(0, pack_record(IRHeader(0, 0.0, 0, 0), jpg.tobytes()))
        w.write(1, pack_record(IRHeader(0, 1.0, 1, 0), jpg.tobytes()))
    ds = MXRecordDataset(str(tmp_path), num_classes=2, pipeline=PIPE)
    assert len(ds) == 2  # flag 0 at record 0: every key is an image
    x = ds[1]['inputs']
    assert x[0].float().mean() == 200 and x[2].float().mean() == 0


def test_multiple_workers_read_all_records(tiny_synth):
    ds = MXRecordDataset(tiny_synth, pipeline=PIPE)
    from mmengine.dataset import pseudo_collate
    loader = DataLoader(ds, batch_size=7, num_workers=2,
                        collate_fn=pseudo_collate)
    seen = []
    for batch in loader:
        seen += [d.gt_label.item() for d in batch['data_samples']]
    assert seen == ds.get_gt_labels().tolist()


def test_bad_label_and_bad_image(tmp_path):
    ok, png = cv2.imencode('.png', np.zeros((112, 112, 3), np.uint8))
    with IndexedRecordWriter(str(tmp_path / 'train.idx'),
                             str(tmp_path / 'train.rec')) as w:
        w.write(1, pack_record(IRHeader(0, 5.0, 1, 0), png.tobytes()))
        w.write(2, pack_record(IRHeader(0, 0.0, 2, 0), b'not an image'))
    ds = MXRecordDataset(str(tmp_path), num_classes=3, pipeline=PIPE)
    with pytest.raises(RecordIOError,
                       match='record key 1: label 5 is outside'):
        ds[0]
    with pytest.raises(ImageDecodeError, match='train.rec record key 2'):
        ds[1]


def test_missing_files_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match='train.idx not found'):
        MXRecordDataset(str(tmp_path), pipeline=PIPE)
    with pytest.raises(FileNotFoundError, match='lfw.bin not found'):
        VerificationBinDataset(ann_file=str(tmp_path / 'lfw.bin'))
    (tmp_path / 'bad.bin').write_bytes(b'garbage')
    with pytest.raises(ValueError, match='not a valid verification .bin'):
        VerificationBinDataset(ann_file=str(tmp_path / 'bad.bin'))
    with open(tmp_path / 'odd.bin', 'wb') as f:
        pickle.dump(([b'a', b'b', b'c'], [True]), f)
    with pytest.raises(ValueError, match='3 images for 1 pairs'):
        VerificationBinDataset(ann_file=str(tmp_path / 'odd.bin'))


def test_verification_bin_python2_style_pickle(tmp_path):
    ok, jpg = cv2.imencode('.jpg', np.full((112, 112, 3), 90, np.uint8))
    bins = [jpg.tobytes()] * 4
    with open(tmp_path / 'lfw.bin', 'wb') as f:
        pickle.dump((bins, [True, False]), f, protocol=2)
    ds = VerificationBinDataset(ann_file=str(tmp_path / 'lfw.bin'),
                                pipeline=PIPE)
    assert len(ds) == 4
    meta = ds[3]['data_samples'].metainfo
    assert meta['set_name'] == 'lfw' and meta['sample_idx'] == 3
    assert meta['pair_label'] is False


class _RunsCode:
    """Pickles to ``os.system('touch <marker>')``: a crafted ``.bin``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def test_verification_bin_refuses_code(tmp_path):
    marker = tmp_path / 'pwned'
    with open(tmp_path / 'evil.bin', 'wb') as f:
        pickle.dump(([b'a', _RunsCode(marker)], [True]), f, protocol=4)
    # the file really runs code with plain pickle:
    with open(tmp_path / 'evil.bin', 'rb') as f:
        pickle.load(f)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ValueError) as err:
        VerificationBinDataset(ann_file=str(tmp_path / 'evil.bin'))
    msg = str(err.value)
    assert 'evil.bin' in msg and f'refused global {os.name}' in msg \
        and 'system' in msg and 'trusted source' in msg
    assert not marker.exists()


def test_verification_bin_numpy_arrays(tmp_path):
    """Re-exported sets with numpy images / issame arrays still load."""
    ok, jpg = cv2.imencode('.jpg', np.full((112, 112, 3), 90, np.uint8))
    bins = [np.frombuffer(jpg.tobytes(), np.uint8)] * 4
    for protocol in (2, 4):
        path = tmp_path / f'np{protocol}.bin'
        with open(path, 'wb') as f:
            pickle.dump((bins, np.array([True, False])), f,
                        protocol=protocol)
        ds = VerificationBinDataset(ann_file=str(path), pipeline=PIPE)
        assert [ds[i]['data_samples'].metainfo['pair_label']
                for i in (0, 2)] == [True, False]
        assert ds[1]['inputs'].shape[-2:] == (112, 112)


def test_face_image_folder(tmp_path):
    for ident in ('bob', 'alice'):
        os.makedirs(tmp_path / ident)
        for i in range(2):
            cv2.imwrite(str(tmp_path / ident / f'{i}.jpg'),
                        np.full((112, 112, 3), 10 * i, np.uint8))
    (tmp_path / 'alice' / 'notes.txt').write_text('skip me')
    ds = DATASETS.build(dict(type='FaceImageFolder', data_root=str(tmp_path),
                             pipeline=PIPE))
    assert len(ds) == 4 and ds.num_classes == 2
    assert [ds[i]['data_samples'].gt_label.item() for i in range(4)] == \
        [0, 0, 1, 1]  # alice < bob

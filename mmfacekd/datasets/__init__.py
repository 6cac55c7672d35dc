"""Importing this package registers datasets and transforms."""
from .face_image_folder import FaceImageFolder
from .identification_set import IdentificationDataset
from .ijb import IJBDataset
from .mx_record_dataset import MXRecordDataset, read_property
from .recordio import (
                       IndexedRecordReader,
                       IndexedRecordWriter,
                       IRHeader,
                       RecordIOError,
                       pack_record,
                       unpack_record,
)
from .samplers import IdentityBalancedBatchSampler, IdentityBalancedSampler
from .transforms import *  # noqa: F401,F403
from .verification_bin import VerificationBinDataset, load_verification_bin

__all__ = [
    'MXRecordDataset', 'FaceImageFolder', 'VerificationBinDataset',
    'IndexedRecordReader', 'IndexedRecordWriter', 'IRHeader', 'RecordIOError',
    'pack_record', 'unpack_record', 'read_property', 'load_verification_bin',
    'IdentityBalancedSampler', 'IdentityBalancedBatchSampler',
    'IdentificationDataset', 'IJBDataset'
]

"""FaceDataPreprocessor: normalization, resize, channels_last layout."""
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from mmfacekd.registry import MODELS


def _batch(n=4, size=112, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8,
                          generator=g) for _ in range(n)]
    return dict(inputs=imgs, data_samples=[DataSample() for _ in range(n)])


def test_normalize_and_resize_by_hand():
    data = _batch()
    pre = MODELS.build(dict(type='FaceDataPreprocessor', resize_to=64))
    out = pre(data)['inputs']
    ref = F.interpolate((torch.stack(data['inputs']).float() - 127.5) / 128.0,
                        size=(64, 64), mode='area')
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_channels_last_same_values_nhwc_strides():
    data = _batch()
    plain = MODELS.build(dict(type='FaceDataPreprocessor', resize_to=64))
    nhwc = MODELS.build(dict(type='FaceDataPreprocessor', resize_to=64,
                             channels_last=True))
    a, b = plain(data)['inputs'], nhwc(data)['inputs']
    assert not a.is_contiguous(memory_format=torch.channels_last)
    assert b.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, b)


def test_channels_last_embedding_matches_nchw():
    """The same recognizer on NHWC input: equal up to float rounding."""
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='FaceRecognizer',
        backbone=dict(type='MobileFaceNet', input_size=64, num_features=32,
                      blocks=(1, 1, 1, 1), scale=1, expansion=(8, 16, 32),
                      conv_sep_channels=32),
        head=None)).eval()
    data = _batch(n=3, size=64, seed=1)
    plain = MODELS.build(dict(type='FaceDataPreprocessor'))
    nhwc = MODELS.build(dict(type='FaceDataPreprocessor', channels_last=True))
    with torch.no_grad():
        e1 = model.extract_feat(plain(data)['inputs'])
        e2 = model.extract_feat(nhwc(data)['inputs'])
    assert (e1 - e2).abs().max() <= 1e-4 * e1.abs().max()

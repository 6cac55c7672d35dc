"""Synthetic face masks: geometry, determinism, variety, M-M / M-N sets."""
import numpy as np
import pytest

from mmfacekd.datasets import VerificationBinDataset
from mmfacekd.datasets.synthetic.face_renderer import (
    render_face,
    sample_identity,
    sample_nuisance,
)
from mmfacekd.datasets.synthetic.synthetic_set import (
    PairSetSpec,
    write_pair_bin,
)
from mmfacekd.datasets.transforms import (
    ApplyFaceMask,
    LoadFaceImage,
    RandomFaceMask,
    draw_mask,
)
from mmfacekd.datasets.transforms.synthetic_mask import (
    MASK_SHAPES,
    MASK_TEXTURES,
    sample_mask,
    template_landmarks,
)


def face(seed, difficulty=1.0):
    rng = np.random.default_rng([seed, 7])
    return render_face(sample_identity(rng), sample_nuisance(rng, difficulty))


def disk(shape, centre, radius):
    ys, xs = np.mgrid[:shape[0], :shape[1]]
    return (xs - centre[0])**2 + (ys - centre[1])**2 <= radius**2


def check_geometry(img, lms, out, alpha):
    le, re, nose, lm, rm = lms
    d = np.hypot(*(re - le))
    # the eyes (and a margin around them) are untouched
    for eye in (le, re):
        m = disk(img.shape, eye, 0.2 * d)
        assert alpha[m].max() == 0.0
        assert np.array_equal(out[m], img[m])
    # the lower face is covered: mouth, below the nose, above the chin
    mouth = 0.5 * (lm + rm)
    for p in (lm, rm, mouth, 0.5 * (nose + mouth),
              mouth + 0.4 * (mouth - 0.5 * (le + re))):
        x, y = np.round(p).astype(int)
        if 0 <= x < img.shape[1] and 0 <= y < img.shape[0]:
            assert alpha[y, x] > 0.99, (p, alpha[y, x])
    # nothing above the eye line is masked
    eye_y = max(le[1], re[1])
    assert alpha[:int(eye_y)].max() == 0.0


@pytest.mark.parametrize('shape', MASK_SHAPES)
def test_mask_covers_lower_face_not_eyes(shape):
    for seed in range(6):
        img, lms = face(seed, difficulty=0.5 + 0.2 * seed)
        for texture in MASK_TEXTURES:
            out, alpha = draw_mask(img, lms, shape=shape, texture=texture,
                                   jitter=0.05, seed=seed,
                                   return_alpha=True)
            check_geometry(img, lms, out, alpha)
    # no landmarks: the ArcFace template scaled to the image (224x224)
    big = np.full((224, 224, 3), 128, np.uint8)
    out, alpha = draw_mask(big, None, shape=shape, return_alpha=True)
    check_geometry(big, template_landmarks(224, 224), out, alpha)
    assert out.dtype == np.uint8 and big.max() == 128  # input untouched


def test_landmarks_are_followed():
    img = np.full((112, 112, 3), 100, np.uint8)
    lms = template_landmarks(112, 112)
    _, a0 = draw_mask(img, lms, return_alpha=True)
    _, a1 = draw_mask(img, lms + (10.0, 0.0), return_alpha=True)
    cx0 = (a0.sum(0) * np.arange(112)).sum() / a0.sum()
    cx1 = (a1.sum(0) * np.arange(112)).sum() / a1.sum()
    assert cx1 - cx0 == pytest.approx(10.0, abs=0.5)


def test_deterministic_with_a_seed():
    img, _ = face(1)
    t1 = RandomFaceMask(prob=1.0, seed=5)
    t2 = RandomFaceMask(prob=1.0, seed=5)
    a = t1(dict(img=img, sample_idx=3))['img']
    b = t2(dict(img=img, sample_idx=3))['img']
    c = t1(dict(img=img, sample_idx=4))['img']
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    kw = sample_mask(np.random.default_rng(0))
    assert np.array_equal(draw_mask(img, **kw), draw_mask(img, **kw))
    np.random.seed(0)  # seed=None draws from numpy's global generator
    x = RandomFaceMask(prob=1.0)(dict(img=img))['img']
    np.random.seed(0)
    assert np.array_equal(x, RandomFaceMask(prob=1.0)(dict(img=img))['img'])


def test_variety_across_seeds_and_prob():
    params = [sample_mask(np.random.default_rng(s)) for s in range(40)]
    assert {p['shape'] for p in params} == set(MASK_SHAPES)
    assert len({p['texture'] for p in params}) >= 4
    assert len({tuple(np.round(p['color'], -1)) for p in params}) >= 8
    img = np.full((112, 112, 3), 128, np.uint8)
    t = RandomFaceMask(prob=1.0, seed=1)
    outs = [t(dict(img=img, sample_idx=i))['img'] for i in range(8)]
    assert len({o.tobytes() for o in outs}) == 8
    half = RandomFaceMask(prob=0.5, seed=2)
    masked = [half(dict(img=img, sample_idx=i))['face_mask'] is not None
              for i in range(200)]
    assert 70 < sum(masked) < 130
    none = RandomFaceMask(prob=0.0)(dict(img=img))
    assert none['face_mask'] is None and none['img'] is img
    with pytest.raises(ValueError, match='unknown mask shapes'):
        RandomFaceMask(shapes=('bandana', ))


@pytest.fixture(scope='module')
def calfw_bin(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('masked') / 'calfw.bin')
    write_pair_bin(path, PairSetSpec('calfw', 5, 0.5), 0, 6, seed=2)
    return path


def _images(ds):
    out = []
    for i in range(len(ds)):
        item = ds[i]
        out.append(item['inputs'].numpy().transpose(1, 2, 0))
        assert item['data_samples'].set_name == ds.set_name
    return out


def test_masked_pair_sets(calfw_bin):
    pipe = [dict(type='LoadFaceImage'), dict(type='PackFaceInputs')]
    plain = VerificationBinDataset(calfw_bin, pipeline=pipe)
    mm = VerificationBinDataset(calfw_bin, pipeline=pipe, mask='M-M')
    mn = VerificationBinDataset(calfw_bin, pipeline=pipe, mask='M-N')
    assert (plain.set_name, mm.set_name, mn.set_name) == (
        'calfw', 'calfw_mm', 'calfw_mn')
    assert isinstance(mm.pipeline.transforms[1], ApplyFaceMask)
    assert isinstance(mm.pipeline.transforms[0], LoadFaceImage)
    p, a, b = _images(plain), _images(mm), _images(mn)
    lower = (slice(75, 105), slice(30, 82))  # around the mouth
    eyes = (slice(42, 56), slice(25, 85))
    for i in range(len(p)):
        assert not np.array_equal(a[i][lower], p[i][lower])  # M-M: all
        assert np.array_equal(a[i][eyes], p[i][eyes])
        if i % 2:  # M-N: the second image of a pair, same mask as M-M
            assert np.array_equal(b[i], a[i])
        else:
            assert np.array_equal(b[i], p[i])
    # deterministic: a second instance (another run / rank) agrees
    again = VerificationBinDataset(calfw_bin, pipeline=pipe, mask='m-m')
    assert all(np.array_equal(x, y) for x, y in zip(_images(again), a))
    other_seed = VerificationBinDataset(calfw_bin, pipeline=pipe, mask='M-M',
                                        mask_seed=1)
    assert not np.array_equal(_images(other_seed)[0], a[0])
    # explicit set names get the suffix once; cfg reaches the transform
    named = VerificationBinDataset(calfw_bin, set_name='calfw_mn',
                                   pipeline=pipe, mask='M-N',
                                   mask_cfg=dict(shapes=('n95', )))
    assert named.set_name == 'calfw_mn'
    assert named.pipeline.transforms[1].shapes == ('n95', )
    assert named.get_data_info(1)['mask_seed'] == \
        mn.get_data_info(1)['mask_seed']


def test_masked_pair_set_errors(calfw_bin):
    with pytest.raises(ValueError, match="use None, 'M-M'"):
        VerificationBinDataset(calfw_bin, mask='both')
    with pytest.raises(ValueError, match='no LoadFaceImage'):
        VerificationBinDataset(calfw_bin, mask='M-M',
                               pipeline=[dict(type='PackFaceInputs')])

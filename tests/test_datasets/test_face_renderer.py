"""Tests of the procedural synthetic face renderer."""
import dataclasses
import hashlib
import math

import numpy as np
import pytest

import mmfacekd.datasets.synthetic as synthetic
from mmfacekd.datasets.synthetic import (
    BEARD_STYLES,
    GLASSES_STYLES,
    HAIR_STYLES,
    OCCLUDERS,
    FaceIdentity,
    FaceNuisance,
    render_face,
    sample_identity,
    sample_nuisance,
)
from mmfacekd.datasets.synthetic.painting import Painter, paint_face
from mmfacekd.datasets.synthetic.photometrics import (
    apply_photometrics,
    render_background,
)
from mmfacekd.structures import ARCFACE_TEMPLATE_112


def _rotate_screen_ccw(pts, angle_deg, center):
    """On-screen counter-clockwise rotation in y-down image coordinates.

    Computed in a y-up frame with a complex multiplication, then flipped
    back, so it does not share the renderer's matrix convention.
    """
    z = (pts[:, 0] - center[0]) - 1j * (pts[:, 1] - center[1])  # y up
    z = z * np.exp(1j * math.radians(angle_deg))
    return np.stack([center[0] + z.real, center[1] - z.imag], axis=1)


def test_template_constant():
    assert ARCFACE_TEMPLATE_112.shape == (5, 2)
    assert ARCFACE_TEMPLATE_112.dtype == np.float32
    assert not ARCFACE_TEMPLATE_112.flags.writeable
    # docs/formats.md section 6 / insightface's arcface_dst
    np.testing.assert_allclose(
        ARCFACE_TEMPLATE_112,
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
         [41.5493, 92.3655], [70.7299, 92.2041]], rtol=0, atol=1e-5)
    # the renderer re-exports the core constant, it does not own a copy
    from mmfacekd.datasets.synthetic import face_renderer
    assert synthetic.ARCFACE_TEMPLATE_112 is ARCFACE_TEMPLATE_112
    assert face_renderer.ARCFACE_TEMPLATE_112 is ARCFACE_TEMPLATE_112


def _golden_faces():
    for i in range(8):
        rng = np.random.default_rng([7, i])
        yield render_face(sample_identity(rng),
                          sample_nuisance(rng, 1.0 + 0.25 * (i % 3)),
                          112 if i % 2 else 64)


def test_golden_render_hash():
    """Pins the renderer's output bit for bit.

    The demo's numbers are reproducible only if ``make_synthetic_faces.py``
    writes the same images for the same seed, release after release; this
    hash was taken before the renderer was split into identity / nuisance /
    painting / photometrics modules and must not change under refactoring.
    A deliberate change of the renderer updates it (and changes the data).
    """
    h = hashlib.sha256()
    for img, lms in _golden_faces():
        h.update(img.tobytes())
        h.update(lms.tobytes())
    assert h.hexdigest() == ('9ee8c29e6a939833b7a2328830a97c904bbe5b9b0ca06'
                             '56c426924f4d3932ac2')


def test_composition_and_order_independence():
    """Properties of the split renderer (not tied to the golden bytes).

    - render_face is exactly background -> paint_face -> photometrics;
    - the module caches (unit circles, pixel grids, the noise bank) do not
      leak state: rendering in any order, at any size, gives the same bytes;
    - the zero nuisance has no photometric effect and needs no generator.
    """
    rng = np.random.default_rng(11)
    faces = [(sample_identity(rng), sample_nuisance(rng, d))
             for d in (0.5, 1.0, 2.0, 1.5)]
    for idt, nui in faces:
        img, lms = render_face(idt, nui, 96)
        r = np.random.default_rng(nui.seed)
        p = Painter(render_background(96, nui, r), idt, nui, 96 / 112)
        lms2 = paint_face(p, idt, nui)
        img2 = apply_photometrics(p.img, nui, r, 96 / 112)
        np.testing.assert_array_equal(img, img2)
        np.testing.assert_array_equal(lms, lms2)
    fwd = [render_face(i, n, s)[0] for s in (64, 112, 224) for i, n in faces]
    bwd = [render_face(i, n, s)[0] for s in (224, 112, 64)
           for i, n in faces[::-1]]
    for a, b in zip(fwd, bwd[::-1]):
        np.testing.assert_array_equal(a, b)
    flat = np.full((112, 112, 3), 77, np.uint8)
    assert apply_photometrics(flat, FaceNuisance(), None, 1.0) is flat


def test_shape_dtype_and_rgb_order():
    img, lms = render_face(FaceIdentity(), FaceNuisance())
    assert img.shape == (112, 112, 3) and img.dtype == np.uint8
    assert lms.shape == (5, 2) and lms.dtype == np.float32

    # a pure-red background must come back in channel 0
    img, _ = render_face(FaceIdentity(),
                         FaceNuisance(bg_color=(255.0, 0.0, 0.0)))
    assert tuple(img[0, 0]) == (255, 0, 0)
    # and a blue-ish skin in channel 2 (cheek, left of the nose)
    idt = FaceIdentity(skin_color=(20.0, 60.0, 230.0), blush=0.0)
    img, _ = render_face(idt, FaceNuisance())
    cheek = img[70:76, 28:34].reshape(-1, 3).mean(0)
    assert cheek[2] > 200 and cheek[0] < 40

    big, big_lms = render_face(FaceIdentity(), FaceNuisance(), size=224)
    assert big.shape == (224, 224, 3)
    _, lms = render_face(FaceIdentity(), FaceNuisance())
    np.testing.assert_allclose(big_lms, 2 * lms, atol=1e-3)


def test_determinism():

    def draw(seed):
        rng = np.random.default_rng(seed)
        idt = sample_identity(rng)
        nui = sample_nuisance(rng, 1.5)
        return idt, nui, render_face(idt, nui)

    for seed in range(5):
        i1, n1, (im1, l1) = draw(seed)
        i2, n2, (im2, l2) = draw(seed)
        assert i1 == i2 and n1 == n2
        assert im1.tobytes() == im2.tobytes()
        np.testing.assert_array_equal(l1, l2)
        # rendering twice from the same objects is byte-identical too
        im3, _ = render_face(i1, n1)
        assert im1.tobytes() == im3.tobytes()
    _, _, (other, _) = draw(99)
    assert other.tobytes() != im1.tobytes()


def test_sampling_consumes_a_fixed_number_of_draws():
    # the nuisance at any difficulty leaves the generator in the same state
    states = []
    for d in (0.0, 0.5, 2.0):
        rng = np.random.default_rng(3)
        sample_nuisance(rng, d)
        states.append(rng.bit_generator.state['state']['state'])
    assert len(set(states)) == 1


def test_zero_difficulty_is_zero_nuisance():
    rng = np.random.default_rng(0)
    nui = sample_nuisance(rng, 0.0)
    assert dataclasses.replace(nui, seed=0) == FaceNuisance()
    idt = sample_identity(rng)
    a, _ = render_face(idt, nui)
    b, _ = render_face(idt, sample_nuisance(rng, 0.0))
    assert a.tobytes() == b.tobytes()


def test_zero_difficulty_landmarks_near_template():
    rng = np.random.default_rng(1)
    for _ in range(40):
        idt = sample_identity(rng)
        _, lms = render_face(idt, sample_nuisance(rng, 0.0))
        err = np.linalg.norm(lms - ARCFACE_TEMPLATE_112, axis=1)
        assert err.max() < 4.0, err


def test_landmarks_follow_rotation():
    rng = np.random.default_rng(2)
    center = (56.0, 56.0)
    for angle in (-17.0, 9.0, 25.0):
        idt = sample_identity(rng)
        _, lms0 = render_face(idt, FaceNuisance())
        img_r, lms_r = render_face(idt, FaceNuisance(angle=angle))
        expect = _rotate_screen_ccw(lms0.astype(np.float64), angle, center)
        np.testing.assert_allclose(lms_r, expect, atol=1e-3)

    # the pixels move with the landmarks: the rotated render matches the
    # zero-nuisance render warped by the same rotation
    cv2 = pytest.importorskip('cv2')
    idt = FaceIdentity()
    img0, lms0 = render_face(idt, FaceNuisance())
    angle = 20.0
    img_r, lms_r = render_face(idt, FaceNuisance(angle=angle))
    rot = cv2.getRotationMatrix2D(center, angle, 1.0)
    warped = cv2.warpAffine(img0, rot, (112, 112))
    inner = (slice(30, 95), slice(30, 82))
    diff_ok = np.abs(warped[inner].astype(int) - img_r[inner]).mean()
    diff_raw = np.abs(img0[inner].astype(int) - img_r[inner]).mean()
    assert diff_ok < 3.0 and diff_raw > 3 * diff_ok


def test_landmarks_follow_scale_and_shift():
    idt = FaceIdentity()
    _, lms0 = render_face(idt, FaceNuisance())
    _, lms = render_face(idt, FaceNuisance(scale=1.1, shift=(3.0, -2.0)))
    expect = (lms0 - 56.0) * 1.1 + 56.0 + np.array([3.0, -2.0])
    np.testing.assert_allclose(lms, expect, atol=1e-3)
    # yaw > 0 swings the nose tip towards image right, more than the eyes
    _, lmy = render_face(idt, FaceNuisance(yaw=20.0))
    d = lmy - lms0
    assert d[2, 0] > 1.0 and d[2, 0] > np.abs(d[:2, 0]).max()
    np.testing.assert_allclose(lmy[:, 1], lms0[:, 1], atol=1e-4)


def test_same_identity_closer_than_different():
    rng = np.random.default_rng(4)
    n_id, n_img = 12, 5
    imgs = np.stack([
        render_face(idt, sample_nuisance(rng, 0.5))[0]
        for idt in [sample_identity(rng) for _ in range(n_id)]
        for _ in range(n_img)
    ]).reshape(n_id * n_img, -1).astype(np.float64)
    labels = np.repeat(np.arange(n_id), n_img)
    sq = (imgs**2).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * imgs @ imgs.T, 0))
    same = labels[:, None] == labels[None]
    off_diag = ~np.eye(len(labels), dtype=bool)
    assert dist[same & off_diag].mean() < 0.85 * dist[~same].mean()


def test_all_styles_render():
    rng = np.random.default_rng(5)
    base = sample_identity(rng)
    nui = sample_nuisance(rng, 1.0)
    for hair in range(len(HAIR_STYLES)):
        for beard in range(len(BEARD_STYLES)):
            idt = dataclasses.replace(
                base,
                hair_style=hair,
                beard=beard,
                glasses=(hair + beard) % len(GLASSES_STYLES),
                mole=(30.0, 70.0, 1.0))
            img, lms = render_face(idt, nui)
            assert img.shape == (112, 112, 3)
            assert np.isfinite(lms).all()
    for occ in range(len(OCCLUDERS)):
        for yaw in (-25.0, 25.0):
            nuo = dataclasses.replace(
                nui, occluder=occ, yaw=yaw, mouth_open=1.0, blink=1.0)
            img, _ = render_face(base, nuo)
            assert img.dtype == np.uint8

"""URFM (CAKD): shapes, iRPE's piecewise index, bucket geometry, attention."""
import math

import pytest
import torch

from mmfacekd.models.connectors import URFM, piecewise_index
from mmfacekd.models.connectors.urfm import (
    flatten_pixel_features,
    grid_positions,
)
from mmfacekd.registry import MODELS

pytestmark = pytest.mark.usefixtures('single_thread')


def _g(x, a, b, c):
    """iRPE eq. 18 written out for one scalar."""
    if abs(x) <= a:
        return round(x)
    v = round(a + math.log(abs(x) / a) / math.log(c / a) * (b - a))
    return int(math.copysign(min(v, math.floor(b)), x))


def test_piecewise_index_hand_values():
    # alpha:beta:gamma = 4:8:32 (the URFM default)
    xs = [0., 1.2, 3.4, 4., 6., 10., 16., 32., 100., -10., -2.6]
    # 6 -> 4 + ln(1.5)/ln(8)*4 = 4.78 -> 5; 10 -> 5.76 -> 6;
    # 16 -> 4 + 4*2/3 = 6.67 -> 7; 32 -> 8; 100 -> 10.2 clipped to 8
    expect = [0, 1, 3, 4, 5, 6, 7, 8, 8, -6, -3]
    assert piecewise_index(torch.tensor(xs), 4, 8, 32).tolist() == expect
    assert [_g(x, 4, 8, 32) for x in xs] == expect
    # iRPE's own default ratio 1.9 (alpha 1.9, beta 3.8, gamma 15.2): the clip
    # is at floor(beta) = 3; 2.5 -> 1.9 + ln(2.5/1.9)/ln(8)*1.9 = 2.15 -> 2
    xs = [0, 1, 2, 3, 2.5, 5, 15, 40, -15]
    expect = [0, 1, 2, 2, 2, 3, 3, 3, -3]
    out = piecewise_index(torch.tensor(xs, dtype=torch.float32), 1.9, 3.8,
                          15.2)
    assert out.dtype == torch.long and out.tolist() == expect
    assert [_g(x, 1.9, 3.8, 15.2) for x in xs] == expect
    # integer input, scalar input
    assert piecewise_index(torch.arange(-3, 4), 1, 2, 8).tolist() == \
        [-2, -1, -1, 0, 1, 1, 2]
    assert piecewise_index(7.0, 4, 8, 32).item() == 5
    with pytest.raises(ValueError):
        piecewise_index(1.0, 4, 2, 32)


def test_layouts_and_shapes():
    x = torch.randn(2, 5, 3, 4)
    tok, grid, extra = flatten_pixel_features(x)
    assert tok.shape == (2, 12, 5) and grid == (3, 4) and extra == 0
    assert torch.equal(tok[:, 5], x[:, :, 1, 1])  # row-major
    t = torch.randn(2, 16 + 3, 8)
    assert flatten_pixel_features(t, (4, 4))[1:] == ((4, 4), 3)
    assert flatten_pixel_features(t, None, 3)[1:] == ((4, 4), 3)
    with pytest.raises(ValueError):
        flatten_pixel_features(t)  # 19 is not a square
    with pytest.raises(ValueError):
        flatten_pixel_features(t, (4, 4), 2)

    # student CNN map (14x14, 24 ch) vs teacher tokens (12x12 + 4 prompts,
    # 40 ch): N_T != N_S, different widths, same (B, L, d) output
    s = MODELS.build(dict(type='URFM', in_channels=24, embed_dims=16))
    t = MODELS.build(dict(type='URFM', in_channels=40, embed_dims=16,
                          num_heads=4, token_grid=(12, 12)))
    hs = s(torch.randn(3, 24, 14, 14))
    ht = t(torch.randn(3, 144 + 4, 40))
    assert hs.shape == ht.shape == (3, 49, 16)
    assert s.last_attn.shape == (3, 1, 49, 196)
    assert t.last_attn.shape == (3, 4, 49, 148)
    for attn in (s.last_attn, t.last_attn):
        assert torch.allclose(attn.sum(-1), torch.ones(()), atol=1e-5)
        assert (attn >= 0).all()
    # a square token grid without prompts, inferred; other center grid
    u = URFM(8, 12, center_grid=(2, 3), num_heads=3)
    assert u(torch.randn(2, 49, 8)).shape == (2, 6, 12)
    with pytest.raises(ValueError):
        URFM(8, 10, num_heads=3)


def test_bucket_geometry_by_hand():
    # one center (anchor at the frame centre 56, 56), a 2x2 pixel grid
    # (centres at 28 and 84), one landmark at (28, 28), unit 28 px
    m = URFM(4, 8, center_grid=(1, 1), landmarks=[(28., 28.)],
             distance_unit=28., alpha=1., beta=3., gamma=8.)
    assert torch.allclose(grid_positions(2, 2), torch.tensor(
        [[28., 28.], [84., 28.], [28., 84.], [84., 84.]], dtype=torch.float64))
    # D_geo = sqrt(2) units for every pixel; D_face = 0, 2, 2, 2*sqrt(2)
    r2 = math.sqrt(2)
    d = [r2, r2 + 2, r2 + 2, 3 * r2]
    assert torch.allclose(m.distances(2, 2) / 28.,
                          torch.tensor([d], dtype=torch.float64))
    # 1.414 -> 1 + ln(1.414)/ln(8)*2 = 1.33 -> 1; 3.414 -> 2.18 -> 2;
    # 4.243 -> 2.39 -> 2
    assert [_g(v, 1, 3, 8) for v in d] == [1, 2, 2, 2]
    assert m.num_buckets == 3 + 2
    idx = m.bucket_indices(2, 2, num_extra=2)
    assert idx.tolist() == [[1, 2, 2, 2, 4, 4]]  # prompts: bucket 4

    # the landmark term at the anchor instead: D_face(anchor) = 28*sqrt(2)
    a = URFM(4, 8, center_grid=(1, 1), landmarks=[(28., 28.)],
             distance_unit=28., face_ref='anchor', alpha=1., beta=3.,
             gamma=8.)
    assert torch.allclose(a.distances(2, 2) / 28.,
                          torch.full((1, 4), 2 * r2, dtype=torch.float64))
    # no facial term: the geometric distance alone
    g = URFM(4, 8, center_grid=(1, 1), face_distance=False,
             distance_unit=28., alpha=1., beta=3., gamma=8.)
    assert torch.allclose(g.distances(2, 2) / 28.,
                          torch.full((1, 4), r2, dtype=torch.float64))


def test_common_face_frame_and_defaults():
    m = URFM(4, 8, face_distance=False)
    # 7x7 centers on a 7x7 map: each anchor coincides with its own pixel
    # (distance 0 -> bucket 0); a 14x14 map has no pixel at the anchors, its
    # nearest pixels are 4*sqrt(2)=5.7 px = 1.41 units away -> bucket 1
    idx7 = m.bucket_indices(7, 7)
    assert torch.equal(idx7.diagonal(), torch.zeros(49, dtype=torch.long))
    assert m.bucket_indices(14, 14).min(1).values.eq(1).all()
    assert m.num_buckets == 10 and m.pos_table.shape == (10, 8)
    # the default landmarks are the ArcFace 112x112 template
    assert torch.allclose(m.landmarks[0].float(),
                          torch.tensor([38.2946, 51.6963]))
    assert URFM(4, 8, pos_encoding=False).pos_table is None


def test_positional_encoding_used_and_trained():
    torch.manual_seed(0)
    m = URFM(6, 8, center_grid=(2, 2), token_grid=(3, 3))
    x = torch.randn(2, 9 + 2, 6)
    base = m(x)
    with torch.no_grad():
        m.pos_table.normal_()
    assert not torch.allclose(m(x), base)
    m(x).square().sum().backward()
    grad = m.pos_table.grad
    used = m.bucket_indices(3, 3, 2).unique()
    assert (grad[used].abs().sum(1) > 0).all()
    assert grad[-1].abs().sum() > 0  # the prompts' no-position bucket


def test_locality_prior_at_init():
    # with content terms switched off, the initial logits are -tau * bucket
    m = URFM(6, 8, num_heads=2, center_grid=(2, 2), token_grid=(3, 3),
             locality_init=0.7)
    with torch.no_grad():
        m.k.weight.zero_()
        m.q.weight.zero_()
        m.q.bias.zero_()
    m(torch.randn(1, 9 + 1, 6))
    idx = m.bucket_indices(3, 3, 1).clone()
    idx[:, -1] = m.num_buckets - 2  # the prompt bucket acts as the farthest
    expect = torch.softmax(-0.7 * idx.float(), dim=-1)
    for h in range(2):
        assert torch.allclose(m.last_attn[0, h], expect, atol=1e-6)
    # locality_init=0 -> iRPE's zero table
    assert URFM(6, 8, locality_init=0).pos_table.abs().sum() == 0

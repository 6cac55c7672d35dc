"""CAKDLoss (shared MSA, L_Attn + L_Feat) and FeatureMSELoss by hand."""
import pytest
import torch
import torch.nn.functional as F

import mmfacekd.models  # noqa: F401  (registers the modules)
from mmfacekd.models.connectors import URFM
from mmfacekd.models.losses import CAKDLoss, FeatureMSELoss, to_feature_map
from mmfacekd.registry import MODELS

pytestmark = pytest.mark.usefixtures('single_thread')


def test_identical_local_features_give_zero():
    torch.manual_seed(0)
    loss = MODELS.build(dict(type='CAKDLoss', embed_dims=16, num_heads=4))
    h = torch.randn(3, 49, 16)
    out = loss(h, h.clone())
    assert set(out) == {'loss', 'attn', 'feat', 'pc1_s', 'pc1_t'}
    for k in ('loss', 'attn', 'feat'):
        assert out[k].item() == 0.0
    assert out['pc1_s'] == out['pc1_t']
    out = loss(h, torch.randn(3, 49, 16))
    assert out['loss'] > 0 and out['attn'] > 0 and out['feat'] > 0
    with pytest.raises(ValueError):
        loss(h, torch.randn(3, 16, 16))


def test_first_component_share():
    """lambda_max / sum(lambda) of the covariance, against numpy's SVD of
    the centred data; 1 for features on one line, ~1/d for isotropic."""
    import numpy as np

    from mmfacekd.models.losses.cakd import first_component_share
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 50, 8, generator=g) * torch.arange(1., 9.)
    z = x.reshape(-1, 8).double().numpy()
    sv = np.linalg.svd(z - z.mean(0), compute_uv=False) ** 2
    assert abs(first_component_share(x).item() - sv[0] / sv.sum()) < 1e-5
    line = torch.randn(300, 1, generator=g) * torch.randn(1, 8, generator=g)
    assert abs(first_component_share(line).item() - 1) < 1e-5
    iso = torch.randn(20000, 8, generator=g)
    assert abs(first_component_share(iso).item() - 1 / 8) < 0.02


def test_attention_loss_by_hand_one_head():
    torch.manual_seed(1)
    d, L = 4, 5
    loss = CAKDLoss(embed_dims=d, num_heads=1, lambda_attn=1.0,
                    lambda_feat=0.0, normalize=None, loss_weight=2.0)
    hs, ht = torch.randn(2, L, d), torch.randn(2, L, d)
    w, b = loss.msa.qkv.weight, loss.msa.qkv.bias
    wq, wk = w[:d], w[d:2 * d]
    bq, bk = b[:d], b[d:2 * d]

    def attn(h):
        q, k = h @ wq.t() + bq, h @ wk.t() + bk
        return torch.softmax(q @ k.transpose(1, 2) / d**0.5, dim=-1)

    a_s, a_t = attn(hs), attn(ht)
    expect = ((a_s - a_t)**2).sum() / a_s.numel()
    out = loss(hs, ht)
    assert torch.allclose(out['attn'], expect, atol=1e-7)
    assert torch.allclose(out['loss'], 2.0 * expect, atol=1e-7)

    # the attention maps are row-stochastic L x L maps per head
    _, maps = loss.attend(hs)
    assert maps.shape == (2, 1, L, L)
    assert torch.allclose(maps.sum(-1), torch.ones(()), atol=1e-6)

    # L_Feat: MSE of the batch-standardized MSA outputs of the
    # batch-standardized local features
    def std(x):
        return (x - x.mean(0)) / (x.var(0, unbiased=False) + 1e-5).sqrt()

    hs, ht = torch.randn(6, L, d), torch.randn(6, L, d)
    loss2 = CAKDLoss(embed_dims=d, num_heads=2, lambda_attn=0.0)
    o_s, m_s = loss2.msa(std(hs))
    o_t, _ = loss2.msa(std(ht))
    expect = F.mse_loss(std(o_s), std(o_t))
    assert torch.allclose(loss2(hs, ht)['loss'], expect, atol=1e-6)
    assert m_s.shape == (6, 2, L, L)
    assert torch.allclose(m_s.sum(-1), torch.ones(()), atol=1e-6)
    # 'layer': LayerNorm over d instead
    loss3 = CAKDLoss(embed_dims=d, num_heads=2, lambda_attn=0.0,
                     normalize='layer')
    loss3.load_state_dict(loss2.state_dict())
    o_s, _ = loss3.msa(F.layer_norm(hs, (d, )))
    o_t, _ = loss3.msa(F.layer_norm(ht, (d, )))
    expect = F.mse_loss(F.layer_norm(o_s, (d, )), F.layer_norm(o_t, (d, )))
    assert torch.allclose(loss3(hs, ht)['loss'], expect, atol=1e-6)
    with pytest.raises(ValueError):
        CAKDLoss(embed_dims=d, normalize='instance')


def test_batch_normalization_blocks_trivial_solutions():
    torch.manual_seed(4)
    loss = CAKDLoss(embed_dims=8, num_heads=2)
    hs, ht = torch.randn(5, 9, 8), torch.randn(5, 9, 8)
    ref = loss(hs, ht)['loss']
    # neither the scale nor an offset of a branch changes the loss
    for a, b in ((0.2, 0.0), (100.0, 3.0), (1.0, -7.0)):
        assert torch.allclose(loss(a * hs + b, ht)['loss'], ref, atol=1e-3)


def test_decorrelation_term_by_hand():
    from mmfacekd.models.losses.cakd import off_diagonal_correlation
    # channels 0 and 1 identical, channel 2 independent of both (exactly)
    a = torch.tensor([1., -1., 1., -1.])
    c = torch.tensor([1., 1., -1., -1.])
    x = torch.stack([a, a, c], dim=-1)  # 4 samples, d = 3
    # C = [[1, 1, 0], [1, 1, 0], [0, 0, 1]] -> (1 + 1) / 3
    assert torch.allclose(off_diagonal_correlation(x), torch.tensor(2 / 3),
                          atol=1e-4)
    torch.manual_seed(5)
    loss = CAKDLoss(embed_dims=8, num_heads=2, decorrelation=0.5)
    hs, ht = torch.randn(4, 9, 8), torch.randn(4, 9, 8)
    out = loss(hs, ht)
    o_s, _ = loss.attend(hs)
    o_t, _ = loss.attend(ht)
    expect = (out['attn'] + out['feat'] + 0.5 * (
        off_diagonal_correlation(o_s) + off_diagonal_correlation(o_t)))
    assert torch.allclose(out['loss'], expect, atol=1e-6)
    assert torch.allclose(out['decor'], off_diagonal_correlation(o_s)
                          + off_diagonal_correlation(o_t))


def test_gradients_reach_both_urfms_and_the_shared_msa():
    torch.manual_seed(2)
    s_urfm = URFM(12, 16, center_grid=(3, 3))                  # CNN map
    t_urfm = URFM(20, 16, center_grid=(3, 3), token_grid=(4, 4))  # tokens
    loss = CAKDLoss(embed_dims=16, num_heads=2)
    s_feat = torch.randn(2, 12, 7, 7, requires_grad=True)
    t_feat = torch.randn(2, 16 + 2, 20, requires_grad=True)  # + 2 prompts
    # a nonzero positional table so its gradient is not the zero-init one
    for m in (s_urfm, t_urfm):
        with torch.no_grad():
            m.pos_table.normal_(std=0.1)
    out = loss(s_urfm(s_feat), t_urfm(t_feat))
    out['loss'].backward()
    for name, mod in (('student URFM', s_urfm), ('teacher URFM', t_urfm),
                      ('MSA', loss.msa)):
        for pname, p in mod.named_parameters():
            assert p.grad is not None, (name, pname)
            # batch standardization removes constant offsets: the output
            # biases of the value paths get (numerically) zero gradients
            if pname not in ('v.bias', 'proj.bias'):
                assert p.grad.abs().sum() > 0, (name, pname)
    # the teacher side is not detached: its tokens (prompts) get gradients,
    # the prompt outputs included
    assert t_feat.grad[:, -2:].abs().sum() > 0
    assert s_feat.grad.abs().sum() > 0

    frozen = CAKDLoss(embed_dims=16, msa_trainable=False)
    assert not any(p.requires_grad for p in frozen.parameters())


def test_feature_mse_loss():
    torch.manual_seed(3)
    # teacher tokens: 4x4 grid + 3 prompt outputs, 8 channels
    t = torch.randn(2, 16 + 3, 8)
    tmap = to_feature_map(t, (4, 4))
    assert tmap.shape == (2, 8, 4, 4)
    assert torch.equal(tmap[:, :, 1, 2], t[:, 6])
    s = torch.randn(2, 8, 2, 2)
    loss = MODELS.build(dict(type='FeatureMSELoss', loss_weight=0.5,
                             teacher_token_grid=(4, 4)))
    expect = 0.5 * F.mse_loss(s, F.avg_pool2d(tmap, 2))
    assert torch.allclose(loss(s, t), expect)
    # a smaller teacher grid is upsampled bilinearly
    small = torch.randn(2, 8, 1, 1)
    assert torch.allclose(FeatureMSELoss()(s, small),
                          F.mse_loss(s, small.expand(2, 8, 2, 2)))
    with pytest.raises(ValueError):
        loss(torch.randn(2, 4, 2, 2), t)

"""PromptedSwinTransformer (CAKD's APT on mmpretrain's Swin) and the Swin-T
face teacher config."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.models import SwinTransformer

from mmfacekd.models.backbones import PromptedSwinTransformer
from mmfacekd.models.backbones.prompted_swin import (
    prompted_swin_block,
    prompted_window_msa,
)
from mmfacekd.registry import MODELS

# Small Swin: 64x64, patch 2 -> grids 32, 16, 8, 4; window 4 divides all.
ARCH = dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[2, 2, 4, 4])
SMALL = dict(arch=ARCH, img_size=64, patch_size=2, window_size=4)
T = 3


def _randomize_bias_tables(model):
    # the tables start at zero; give them values so the bias path is tested
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'relative_position_bias_table' in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _pair(prompt_cfg=None, **kwargs):
    """An mmpretrain Swin and a PromptedSwinTransformer with its weights."""
    torch.manual_seed(0)
    cfg = {**SMALL, **kwargs}
    ref = SwinTransformer(**cfg)
    _randomize_bias_tables(ref)
    ours = PromptedSwinTransformer(prompt_cfg=prompt_cfg, **cfg)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.eval()
    ours.eval()
    return ref, ours


def _record_token_out(model):
    got = {}
    model.token_out.register_forward_hook(
        lambda m, i, o: got.__setitem__('tokens', o))
    return got


@pytest.mark.parametrize('kwargs', [
    dict(),
    # padded small maps and a shift on a map equal to the window
    dict(img_size=56, patch_size=4, window_size=7, pad_small_map=True),
    dict(out_indices=(0, 1, 2, 3), out_after_downsample=True),
    dict(out_indices=(1, 2)),
])
def test_prompts_off_bit_identical_to_mmpretrain(kwargs):
    ref, ours = _pair(**kwargs)
    assert set(ours.state_dict()) == set(ref.state_dict())
    x = torch.randn(2, 3, ours.patch_resolution[0] * ours.patch_embed.
                    projection.kernel_size[0], ours.patch_resolution[1] *
                    ours.patch_embed.projection.kernel_size[1])
    with torch.no_grad():
        expected = ref(x)
        plain = ours(x)
        # our re-implemented (prompted) block path with t = 0 prompts
        zero_t = ours.forward_with_prompts(
            x, [torch.zeros(0, c) for c in ours.stage_channels])
    assert len(plain) == len(expected) == len(zero_t)
    for a, b, c in zip(expected, plain, zero_t):
        assert torch.equal(a, b)
        assert torch.equal(a, c)


def test_zero_prompt_path_equal_in_train_mode_with_drop_path():
    ref, ours = _pair(drop_path_rate=0.3)
    ref.train()
    ours.train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(5)
    expected = ref(x)
    torch.manual_seed(5)
    got = ours.forward_with_prompts(
        x, [torch.zeros(0, c) for c in ours.stage_channels])
    assert torch.equal(expected[0], got[0])


def test_state_dict_keys_shapes_and_loading():
    ref, ours = _pair(prompt_cfg=dict(num_prompts=T))
    ref_keys = set(ref.state_dict())
    keys = set(ours.state_dict())
    assert keys == ref_keys | {f'prompts.{i}' for i in range(4)}
    assert [tuple(p.shape) for p in ours.prompts] == [(T, 16), (T, 32),
                                                      (T, 64), (T, 128)]
    assert ours.stage_channels == [16, 32, 64, 128]
    # a plain Swin checkpoint loads strictly; prompts keep their init
    before = [p.detach().clone() for p in ours.prompts]
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(before, ours.prompts))
    # a prompted checkpoint round-trips, prompts included
    other = PromptedSwinTransformer(prompt_cfg=dict(num_prompts=T), **SMALL)
    other.load_state_dict(ours.state_dict(), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(other.prompts, ours.prompts))
    # prompts are parameters of the backbone, named prompts.<i>
    names = [n for n, _ in ours.named_parameters() if 'prompts' in n]
    assert names == [f'prompts.{i}' for i in range(4)]
    # a prompt-less model has no extra key and no prompts
    plain = PromptedSwinTransformer(**SMALL)
    assert set(plain.state_dict()) == ref_keys and plain.prompts is None


def test_token_out_attributes_and_without_prompts():
    ref, ours = _pair(prompt_cfg=dict(num_prompts=T))
    got = _record_token_out(ours)
    x = torch.randn(2, 3, 64, 64)
    assert ours.prompts_enabled and ours.num_prompt_tokens == T
    assert ours.token_grid == (4, 4)
    with torch.no_grad():
        out = ours(x)
    tokens = got['tokens']
    assert tokens.shape == (2, 4 * 4 + T, 128)
    assert len(out) == 1 and out[0].shape == (2, 128, 4, 4)
    # the backbone output is the spatial part of token_out, row-major
    assert torch.equal(out[0].flatten(2).transpose(1, 2), tokens[:, :16])
    with torch.no_grad():
        expected = ref(x)
    assert not torch.allclose(out[0], expected[0])  # prompts matter

    with ours.without_prompts():
        assert not ours.prompts_enabled and ours.num_prompt_tokens == 0
        with torch.no_grad():
            plain = ours(x)
        assert got['tokens'].shape == (2, 16, 128)
        with ours.without_prompts():  # nesting keeps the outer state
            pass
        assert not ours.prompts_enabled
    assert ours.prompts_enabled and ours.num_prompt_tokens == T
    assert torch.equal(plain[0], expected[0])

    # without prompt_cfg token_out gets the spatial tokens
    _, no_prompts = _pair()
    got2 = _record_token_out(no_prompts)
    with torch.no_grad():
        no_prompts(x)
    assert got2['tokens'].shape == (2, 16, 128)
    assert not no_prompts.prompts_enabled
    assert no_prompts.num_prompt_tokens == 0


@pytest.mark.parametrize('with_cp', [False, True])
def test_gradients_reach_only_the_prompts(with_cp):
    _, ours = _pair(prompt_cfg=dict(num_prompts=T), with_cp=with_cp)
    for name, p in ours.named_parameters():
        p.requires_grad_(name.startswith('prompts.'))
    got = _record_token_out(ours)
    ours(torch.randn(2, 3, 64, 64))
    got['tokens'].pow(2).mean().backward()
    for name, p in ours.named_parameters():
        if name.startswith('prompts.'):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def _naive_prompted_window_msa(w_msa, windows, prompts, mask):
    """Window by window: append the prompts, attend, average prompt rows."""
    bw, n, c = windows.shape
    b, t, _ = prompts.shape
    nw, heads = bw // b, w_msa.num_heads
    m = n + t
    bias = torch.zeros(heads, m, m, dtype=windows.dtype)
    table = w_msa.relative_position_bias_table
    bias[:, :n, :n] = table[w_msa.relative_position_index.view(-1)].view(
        n, n, heads).permute(2, 0, 1)
    tok, pro = [], torch.zeros(b, t, c, dtype=windows.dtype)
    for i in range(bw):
        seq = torch.cat([windows[i], prompts[i // nw]])
        q, k, v = w_msa.qkv(seq).view(m, 3, heads, c // heads).permute(
            1, 2, 0, 3)
        logits = (q * w_msa.scale) @ k.transpose(-2, -1) + bias
        if mask is not None:
            logits[:, :n, :n] += mask[i % nw]
        o = (logits.softmax(-1) @ v).transpose(0, 1).reshape(m, c)
        o = w_msa.proj(o)
        tok.append(o[:n])
        pro[i // nw] += o[n:] / nw
    return torch.stack(tok), pro


@pytest.mark.parametrize('block_idx', [0, 1])
def test_prompted_window_attention_matches_naive_reference(block_idx):
    _, ours = _pair(prompt_cfg=dict(num_prompts=T))
    ours.double()
    attn = ours.stages[1].blocks[block_idx].attn  # 16x16 map, 16 windows
    ws, shift = attn.window_size, attn.shift_size
    assert shift == (2 if block_idx else 0)
    windows = torch.randn(2 * 16, ws * ws, 32, dtype=torch.float64)
    prompts = torch.randn(2, T, 32, dtype=torch.float64)
    mask = attn.get_attn_mask((16, 16), ws, shift)
    with torch.no_grad():
        tok, pro = prompted_window_msa(attn.w_msa, windows, prompts, mask)
        ref_tok, ref_pro = _naive_prompted_window_msa(attn.w_msa, windows,
                                                      prompts, mask)
    assert torch.allclose(tok, ref_tok, atol=1e-12)
    assert torch.allclose(pro, ref_pro, atol=1e-12)


def _region(v, ws, shift, size):
    """Index range of the (shifted) window holding position v, in original
    coordinates: windows start at shift + k*ws, no wrap-around."""
    if shift and v < shift:
        return range(0, shift)
    start = shift + ((v - shift) // ws) * ws
    return range(start, min(start + ws, size))


@pytest.mark.parametrize('t', [0, T])
def test_window_locality_and_shift_mask(t):
    """A token change stays in its (shifted) window within one block; with
    prompts it crosses windows one block later, through the prompts."""
    _, ours = _pair(prompt_cfg=dict(num_prompts=T))
    ours.double()
    stage = ours.stages[0]  # 32x32 map, window 4, shift 2
    hw, c = (32, 32), 16
    x = torch.randn(1, 32 * 32, c, dtype=torch.float64)
    p = torch.randn(1, t, c, dtype=torch.float64)
    r, col = 5, 9
    x2 = x.clone()
    x2[0, r * 32 + col] += torch.randn(c, dtype=torch.float64)  # not a
    # constant shift, which LayerNorm would erase

    def changed(a, b):
        diff = (a - b).abs().amax(-1)[0].view(32, 32) > 0
        return {(int(i), int(j)) for i, j in diff.nonzero()}

    with torch.no_grad():
        for idx in (0, 1):
            block = stage.blocks[idx]
            shift = 2 if idx else 0
            y, py = prompted_swin_block(block, x, p, hw)
            y2, py2 = prompted_swin_block(block, x2, p, hw)
            expected = {(i, j) for i in _region(r, 4, shift, 32)
                        for j in _region(col, 4, shift, 32)}
            assert changed(y, y2) == expected
            if t:
                assert not torch.equal(py, py2)  # prompts saw the change
        # two blocks (regular, then shifted): far tokens change only via
        # the prompts
        y, py = prompted_swin_block(stage.blocks[0], x, p, hw)
        y, _ = prompted_swin_block(stage.blocks[1], y, py, hw)
        y2, py2 = prompted_swin_block(stage.blocks[0], x2, p, hw)
        y2, _ = prompted_swin_block(stage.blocks[1], y2, py2, hw)
    far = (30, 30)
    assert (far in changed(y, y2)) == bool(t)


def test_first_block_of_the_model_is_window_local():
    """Through the real forward: changing one input patch changes, after
    the first (regular) block, only its window's tokens."""
    _, ours = _pair(prompt_cfg=dict(num_prompts=T))
    outs = []
    ours.stages[0].blocks[0].norm2.register_forward_hook(
        lambda m, i, o: outs.append(i[0]))  # input of norm2: post-attention
    x = torch.randn(1, 3, 64, 64)
    x2 = x.clone()
    x2[:, :, 2 * 5, 2 * 9] += 1.0  # patch (5, 9) at patch size 2
    with torch.no_grad():
        ours(x)
        ours(x2)
    a, b = outs
    assert a.shape == (1, 32 * 32 + T, 16)
    diff = (a[0, :1024] - b[0, :1024]).abs().amax(-1).view(32, 32) > 0
    changed = {(int(i), int(j)) for i, j in diff.nonzero()}
    assert changed == {(i, j) for i in range(4, 8) for j in range(8, 12)}
    assert not torch.equal(a[0, 1024:], b[0, 1024:])


def test_prompt_init_and_errors():
    zeros = PromptedSwinTransformer(
        prompt_cfg=dict(num_prompts=2, init='zeros'), **SMALL)
    assert all(p.abs().sum() == 0 for p in zeros.prompts)
    tn = PromptedSwinTransformer(
        prompt_cfg=dict(num_prompts=50, init='trunc_normal', std=0.1),
        **SMALL)
    assert all(p.abs().max() <= 0.2 + 1e-6 for p in tn.prompts)
    assert 0.03 < tn.prompts[3].std() < 0.1
    uni = PromptedSwinTransformer(
        prompt_cfg=dict(num_prompts=50, init='uniform', bound=0.3), **SMALL)
    assert all(p.abs().max() <= 0.3 for p in uni.prompts)
    assert uni.prompts[3].abs().max() > 0.25
    for bad in (dict(num_prompts=0), dict(num_prompts=2, init='normal'),
                dict(num_prompts=2, depth=3), dict()):
        with pytest.raises(ValueError):
            PromptedSwinTransformer(prompt_cfg=bad, **SMALL)
    # built from the registry with an mmpretrain arch name, too
    m = MODELS.build(dict(type='PromptedSwinTransformer', arch='tiny',
                          img_size=112, patch_size=2,
                          prompt_cfg=dict(num_prompts=4)))
    assert m.token_grid == (7, 7) and m.stage_channels == [96, 192, 384, 768]
    assert m.get_layer_depth('prompts.2') == (5, 14)
    assert m.get_layer_depth('backbone.prompts.0', 'backbone.') == (1, 14)


def test_arcface_swin_t_config_builds_and_runs():
    init_default_scope('mmfacekd')
    cfg = Config.fromfile('configs/arcface/arcface_swin_t_ms1mv2.py')
    cfg.model.head.num_classes = 100  # keep the test light
    model = MODELS.build(cfg.model).eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        feats = model.backbone(x)
        emb = model.extract_feat(x)
    assert [tuple(f.shape) for f in feats] == [(2, 768, 7, 7)]
    assert emb.shape == (2, 512)
    assert sum(p.numel() for p in model.backbone.parameters()) == 27515898

    # the CAKD override: the same teacher with APT prompts
    pcfg = copy.deepcopy(cfg.model)
    pcfg.backbone.update(type='PromptedSwinTransformer',
                         prompt_cfg=dict(num_prompts=4))
    prompted = MODELS.build(pcfg).eval()
    prompted.load_state_dict(model.state_dict(), strict=True)
    got = _record_token_out(prompted.backbone)
    with torch.no_grad():
        emb_p = prompted.extract_feat(x)
        assert got['tokens'].shape == (2, 7 * 7 + 4, 768)
        with prompted.backbone.without_prompts():
            emb_plain = prompted.extract_feat(x)
    assert emb_p.shape == (2, 512)
    assert torch.equal(emb_plain, emb)

    # AdamW without decay on norms, biases and relative-position tables
    from mmengine.optim import build_optim_wrapper
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decays = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            decays[names[id(p)]] = group['weight_decay']
    attn = 'backbone.stages.0.blocks.0.attn.w_msa.'
    assert decays[attn + 'relative_position_bias_table'] == 0.0
    assert decays['backbone.norm3.weight'] == 0.0
    assert decays[attn + 'qkv.bias'] == 0.0
    assert decays[attn + 'qkv.weight'] == 0.05

"""FaceViT: insightface vit_t/s/b layout and outputs; APT prompts."""
import json
import os.path as osp
import sys

import pytest
import torch

from mmfacekd.registry import MODELS

sys.path.insert(0, osp.dirname(__file__))
from insightface_fill import deterministic_fill_, reference_input  # noqa: E402

REF = json.load(open(osp.join(osp.dirname(__file__), '..', '..', 'data',
                              'insightface_reference.json')))
TINY = dict(type='FaceViT', arch=dict(embed_dim=32, depth=4, num_heads=4),
            img_size=32, patch_size=8, num_features=16)


@pytest.mark.parametrize('arch', ['vit_t', 'vit_s', 'vit_b'])
def test_state_dict_layout_equals_insightface(arch):
    model = MODELS.build(dict(type='FaceViT', arch=arch))
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == REF['keys'][arch]


def test_same_embedding_as_insightface_vit_t():
    model = MODELS.build(dict(type='FaceViT', arch='vit_t')).eval()
    deterministic_fill_(model)
    with torch.no_grad():
        out = model(reference_input().float())
    ref = torch.tensor(REF['outputs']['vit_t'])
    # insightface's attention runs in float32, so compare in float32
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max())


def test_prompts_keep_keys_and_switch_off_bit_exactly():
    torch.manual_seed(0)
    plain = MODELS.build(TINY).eval()
    prompted = MODELS.build(dict(TINY, prompt_cfg=dict(num_prompts=3,
                                                       groups=2))).eval()
    state = prompted.state_dict()
    extra = sorted(set(state) - set(plain.state_dict()))
    assert extra == ['prompts.0', 'prompts.1']
    assert state['prompts.0'].shape == (3, 32)
    # pretrained weights load into the prompted model (prompts not required)
    missing, unexpected = prompted.load_state_dict(plain.state_dict(),
                                                   strict=False)
    assert missing == ['prompts.0', 'prompts.1'] and unexpected == []
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = plain(x)
        assert prompted.prompts_enabled and prompted.num_prompt_tokens == 3
        with_p = prompted(x)
        with prompted.without_prompts():
            assert not prompted.prompts_enabled
            assert prompted.num_prompt_tokens == 0
            off = prompted(x)
    assert torch.equal(off, ref)
    assert not torch.allclose(with_p, ref)


def test_token_out_and_group_semantics():
    model = MODELS.build(dict(TINY, prompt_cfg=dict(num_prompts=2,
                                                    groups=2))).eval()
    seen = []
    model.token_out.register_forward_hook(
        lambda m, i, o: seen.append(o.clone()))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model(x)
    assert model.token_grid == (4, 4)
    assert seen[-1].shape == (2, 16 + 2, 32)
    # prompts of group 0 are dropped at the end of the group: changing them
    # changes the patch tokens but the sequence length stays N + t
    with torch.no_grad():
        # (a constant shift would vanish in LayerNorm)
        model.prompts[0].mul_(-3.0)
        model(x)
    assert seen[-1].shape == (2, 18, 32)
    assert not torch.allclose(seen[-1][:, :16], seen[-2][:, :16])


def test_only_prompts_get_gradients_when_frozen():
    model = MODELS.build(dict(TINY, prompt_cfg=dict(num_prompts=2,
                                                    groups=2))).eval()
    model.requires_grad_(False)
    model.prompts.requires_grad_(True)
    tokens = []
    model.token_out.register_forward_hook(lambda m, i, o: tokens.append(o))
    model(torch.randn(2, 3, 32, 32))
    tokens[-1].pow(2).mean().backward()
    for name, p in model.named_parameters():
        if name.startswith('prompts.'):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_training_masks_tokens_and_errors():
    model = MODELS.build(dict(TINY, mask_ratio=0.25)).train()
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 16)
    with pytest.raises(ValueError, match='32x32'):
        model(torch.randn(1, 3, 40, 40))
    with pytest.raises(KeyError, match='vit_q'):
        MODELS.build(dict(type='FaceViT', arch='vit_q'))
    with pytest.raises(ValueError, match='num_prompts'):
        MODELS.build(dict(TINY, prompt_cfg=dict(num_prompts=0)))


@pytest.mark.parametrize('mask_ratio', [0.0, 0.5])
def test_every_trainable_parameter_gets_a_gradient(mask_ratio):
    """DDP (``tools/dist_train.sh``) refuses trainable parameters outside
    the graph: without token masking ``mask_token`` must not be one."""
    torch.manual_seed(0)
    model = MODELS.build(dict(TINY, mask_ratio=mask_ratio)).train()
    model(torch.randn(4, 3, 32, 32)).square().sum().backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.requires_grad and p.grad is None]
    assert no_grad == []
    assert model.mask_token.requires_grad == (mask_ratio > 0)
    assert 'mask_token' in model.state_dict()  # insightface's keys kept

"""Swin Transformer (mmpretrain) with CAKD's Adaptable Prompting Teacher (APT).

CAKD (ACM MM 2023, see ``docs/papers.md`` §2) freezes a pretrained Transformer
teacher and inserts ``t`` learnable prompt tokens into each stage; the prompts
join (window) attention like tokens, are dropped at patch merging, fresh
prompts enter the next stage, and the teacher's pixel feature is the last
stage's tokens plus its prompt outputs. Only the prompts train.

:class:`PromptedSwinTransformer` is mmpretrain's ``SwinTransformer`` plus that
mechanism. The paper gives no details for Swin's *windowed* attention; the
decisions below are ours.

Design (prompts in shifted-window attention)
--------------------------------------------
* **One prompt state per image, shared by all windows.** Each stage owns a
  parameter ``prompts[i]`` of shape ``(t, C_i)``; it is the stage's initial
  prompt state, broadcast over the batch. In every block the same ``t``
  prompts are appended to *every* window's token sequence (``N = w²`` →
  ``N + t``). Each window produces its own prompt outputs; they are
  **averaged over the windows** of the image right after the attention, so
  the prompt state stays ``(B, t, C)``; norms, residuals, drop-path and the
  MLP are then applied to prompts exactly as to tokens.
  Why averaged rather than kept per window: (1) the window partition changes
  between regular and shifted blocks (and is cropped/padded), so a per-window
  prompt state would have no consistent spatial meaning from one block to
  the next; (2) averaging turns the prompts into a global channel through
  which every window's tokens see a summary of the whole face one block
  later — windowed attention alone has a limited receptive field, which is
  exactly the CNN/Transformer mismatch CAKD addresses; (3) it costs ``t``
  extra tokens per image instead of ``t`` per window, and ``token_out`` gets
  one set of ``t`` prompt tokens with no further reduction.
  Implementation detail: the prompts' q/k/v are computed once per image and
  shared by its windows; the prompt rows of ``attn @ v`` are averaged over
  windows *before* the output projection (a linear map, so this equals
  averaging after it).
* **Relative position bias:** zero for every prompt row and column (prompts
  have no position); the token–token block keeps the learned table.
* **Shift mask:** unchanged between tokens; no mask between prompts and
  tokens (a prompt sees every token of the rolled window and every token sees
  the prompts) nor among prompts.
* **Padding** (``pad_small_map=True`` with a map smaller than or not a
  multiple of the window): as in mmpretrain, the zero padding tokens take
  part in the attention unmasked; prompts see them like tokens do.
* **Stages:** fresh prompts ``prompts[i]`` enter stage ``i``; the stage's
  prompt outputs are dropped before patch merging (``downsample``).
* **Consequence, tested:** in the first (non-shifted) block of a stage the
  prompts entering every window are the same parameters, so a change of a
  token in one window changes only that window's token outputs (and the
  averaged prompt outputs); from the next block on, information crosses
  windows through the prompts.

Interface shared with the face ViT and URFM (CAKD)
--------------------------------------------------
* ``self.token_out`` (an ``nn.Identity``) receives the final stage's tokens
  ``(B, H*W + t, C)``: spatial tokens first in row-major order, then the
  ``t`` prompt outputs of the last stage, after the last stage's output norm
  when that stage is in ``out_indices`` (the default). Without prompts (no
  ``prompt_cfg``, or inside :meth:`without_prompts`) it gets just the
  ``H*W`` spatial tokens. Record it with
  ``source='teacher.backbone.token_out'``.
* ``token_grid`` ``(H, W)`` of the final stage (from ``img_size`` at build
  time, updated by every forward), ``num_prompt_tokens`` (``t`` while
  prompts are active, else 0), ``prompts_enabled`` (prompts exist and are
  active) and the context manager :meth:`without_prompts`.
* The normal output (a tuple of ``(B, C, H, W)`` maps for ``out_indices``)
  never contains prompts, so an ``EmbeddingNeck`` works unchanged.

Without ``prompt_cfg`` the state dict equals mmpretrain's ``SwinTransformer``
and the forward runs mmpretrain's own stage/block modules, so outputs are
bit-identical to ``mmpretrain.SwinTransformer`` with the same weights. With
``prompt_cfg`` the state dict has extra ``prompts.<i>`` keys only; a plain
Swin checkpoint still loads strictly (missing prompts keep their fresh
initialization, see :meth:`_load_from_state_dict`).
"""
import math
from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.logging import MMLogger
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.backbones.swin_transformer import (
    SwinBlock,
    SwinTransformer,
)
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.models.utils.attention import ShiftWindowMSA, WindowMSA

from mmfacekd.registry import MODELS

_PROMPT_INITS = ('trunc_normal', 'zeros', 'uniform')


def prompted_window_msa(w_msa: WindowMSA, windows: torch.Tensor,
                        prompts: torch.Tensor,
                        mask: Optional[torch.Tensor] = None
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """mmpretrain's :class:`WindowMSA` with ``t`` prompts in every window.

    Args:
        w_msa (WindowMSA): The block's window attention (its ``qkv``,
            ``proj``, ``relative_position_bias_table`` are used).
        windows (Tensor): ``(B*nW, N, C)`` window tokens, windows of one
            image contiguous (mmpretrain's ``window_partition`` order).
        prompts (Tensor): ``(B, t, C)`` prompt state, shared by the ``nW``
            windows of each image; ``t`` may be 0.
        mask (Tensor, optional): ``(nW, N, N)`` shifted-window mask.

    Returns:
        tuple: ``(B*nW, N, C)`` token outputs and ``(B, t, C)`` prompt
        outputs averaged over the windows of each image.
    """
    bw, n, c = windows.shape
    b, t, _ = prompts.shape
    nw = bw // b
    heads = w_msa.num_heads
    qkv = w_msa.qkv(windows)
    # q/k/v of the prompts once per image, shared by its windows
    qkv_p = w_msa.qkv(prompts)
    qkv_p = qkv_p.unsqueeze(1).expand(b, nw, t, 3 * c).reshape(bw, t, 3 * c)
    qkv = torch.cat([qkv, qkv_p], dim=1)
    m = n + t
    qkv = qkv.reshape(bw, m, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]

    q = q * w_msa.scale
    attn = (q @ k.transpose(-2, -1))

    wh, ww = w_msa.window_size
    bias = w_msa.relative_position_bias_table[
        w_msa.relative_position_index.view(-1)].view(wh * ww, wh * ww, -1)
    bias = bias.permute(2, 0, 1).contiguous()
    if t:  # prompts have no position: zero bias in their rows and columns
        bias = F.pad(bias, (0, t, 0, t))
    attn = attn + bias.unsqueeze(0)

    if mask is not None:
        if t:  # no mask between prompts and tokens
            mask = F.pad(mask, (0, t, 0, t))
        n_mask = mask.shape[0]
        attn = attn.view(bw // n_mask, n_mask, heads, m,
                         m) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, heads, m, m)
    attn = w_msa.softmax(attn)
    attn = w_msa.attn_drop(attn)

    out = (attn @ v).transpose(1, 2).reshape(bw, m, c)
    x = w_msa.proj_drop(w_msa.proj(out[:, :n]))
    # averaging over windows commutes with the (affine) projection
    p = out[:, n:].reshape(b, nw, t, c).mean(dim=1)
    p = w_msa.proj_drop(w_msa.proj(p))
    return x, p


def prompted_shift_window_msa(attn: ShiftWindowMSA, x: torch.Tensor,
                              prompts: torch.Tensor,
                              hw_shape: Sequence[int]) -> torch.Tensor:
    """mmpretrain's :class:`ShiftWindowMSA` forward with prompts.

    Same padding / cyclic shift / window partition as mmpretrain, with the
    attention replaced by :func:`prompted_window_msa`.

    Returns:
        Tensor: ``(B, H*W + t, C)`` — token outputs then prompt outputs,
        after the module's drop path (one decision per sample for both).
    """
    b, length, c = x.shape
    h, w = hw_shape
    assert length == h * w, (f"The query length {length} doesn't match the "
                             f'input shape ({h}, {w}).')
    if not isinstance(attn.w_msa, WindowMSA) or type(
            attn.w_msa).forward is not WindowMSA.forward:
        raise TypeError('PromptedSwinTransformer supports mmpretrain\'s '
                        f'WindowMSA only, got {type(attn.w_msa).__name__}')
    query = x.view(b, h, w, c)
    window_size = attn.window_size
    shift_size = attn.shift_size
    if min(h, w) == window_size:
        shift_size = shift_size if attn.pad_small_map else 0
    elif min(h, w) < window_size:
        assert attn.pad_small_map, \
            f'The input shape ({h}, {w}) is smaller than the window size ' \
            f'({window_size}). Please set `pad_small_map=True`, or ' \
            'decrease the `window_size`.'

    pad_r = (window_size - w % window_size) % window_size
    pad_b = (window_size - h % window_size) % window_size
    query = F.pad(query, (0, 0, 0, pad_r, 0, pad_b))
    h_pad, w_pad = query.shape[1], query.shape[2]

    if shift_size > 0:
        query = torch.roll(
            query, shifts=(-shift_size, -shift_size), dims=(1, 2))
    attn_mask = attn.get_attn_mask((h_pad, w_pad),
                                   window_size=window_size,
                                   shift_size=shift_size,
                                   device=query.device)

    windows = attn.window_partition(query, window_size)
    windows = windows.view(-1, window_size**2, c)
    windows, p = prompted_window_msa(attn.w_msa, windows, prompts,
                                     mask=attn_mask)

    windows = windows.view(-1, window_size, window_size, c)
    shifted = attn.window_reverse(windows, h_pad, w_pad, window_size)
    if shift_size > 0:
        x = torch.roll(shifted, shifts=(shift_size, shift_size), dims=(1, 2))
    else:
        x = shifted
    if h != h_pad or w != w_pad:
        x = x[:, :h, :w, :].contiguous()
    x = x.view(b, h * w, c)
    return attn.drop(torch.cat([x, p], dim=1))


def prompted_swin_block(block: SwinBlock, x: torch.Tensor,
                        prompts: torch.Tensor, hw_shape: Sequence[int]
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One mmpretrain :class:`SwinBlock` over tokens ``x`` and prompts.

    Prompts go through ``norm1``, the (shifted) window attention, the
    residuals, ``norm2`` and the FFN exactly like tokens.

    Returns:
        tuple: ``(B, H*W, C)`` tokens and ``(B, t, C)`` prompts.
    """

    def _inner_forward(x, prompts):
        n = x.shape[1]
        identity = torch.cat([x, prompts], dim=1)
        y = block.norm1(identity)
        y = prompted_shift_window_msa(block.attn, y[:, :n], y[:, n:],
                                      hw_shape)
        y = y + identity
        identity = y
        y = block.norm2(y)
        y = block.ffn(y, identity=identity)
        return y[:, :n], y[:, n:]

    if block.with_cp and (x.requires_grad or prompts.requires_grad):
        return cp.checkpoint(_inner_forward, x, prompts, use_reentrant=False)
    return _inner_forward(x, prompts)


@MODELS.register_module()
class PromptedSwinTransformer(SwinTransformer):
    """mmpretrain's ``SwinTransformer`` with optional APT prompts (CAKD).

    All arguments of ``mmpretrain.SwinTransformer`` are accepted (``arch`` a
    name or a dict with ``embed_dims``, ``depths``, ``num_heads``). See the
    module docstring for the design.

    Args:
        prompt_cfg (dict, optional): None → a plain Swin (no extra keys,
            mmpretrain's outputs). Otherwise:

            - ``num_prompts`` (int, ≥ 1): ``t`` prompts per stage;
            - ``init`` (str): ``'trunc_normal'`` (default; std ``std``,
              truncated at ±2·std), ``'zeros'`` or ``'uniform'`` (U(−a, a)
              with ``a = bound`` if given, else VPT's Xavier-style
              ``sqrt(6 / (3·patch_area + C_i))``);
            - ``std`` (float): defaults to 0.02;
            - ``bound`` (float, optional): for ``'uniform'``.
        **kwargs: ``mmpretrain.SwinTransformer`` arguments.

    Attributes:
        prompts (nn.ParameterList | None): ``prompts[i]`` of shape
            ``(t, C_i)`` for stage ``i``.
        token_out (nn.Identity): Receives the final stage's tokens
            ``(B, H*W [+ t], C)``.
        token_grid (tuple[int, int]): ``(H, W)`` of the final stage.
        stage_channels (list[int]): ``C_i`` of each stage.
    """

    def __init__(self, *args, prompt_cfg: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.token_out = nn.Identity()
        self.stage_channels: List[int] = [s.embed_dims for s in self.stages]
        self.token_grid: Tuple[int, int] = self._final_grid(
            self.patch_resolution)
        self._prompts_active = True
        self.prompt_cfg = None if prompt_cfg is None else dict(prompt_cfg)
        if prompt_cfg is None:
            self.prompts = None
            return
        cfg = dict(prompt_cfg)
        unknown = set(cfg) - {'num_prompts', 'init', 'std', 'bound'}
        if unknown:
            raise ValueError(f'Unknown prompt_cfg keys {sorted(unknown)}; '
                             'use num_prompts, init, std, bound')
        t = cfg.get('num_prompts')
        if not isinstance(t, int) or isinstance(t, bool) or t < 1:
            raise ValueError('prompt_cfg.num_prompts must be an int >= 1 (use '
                             f'prompt_cfg=None for no prompts), got {t!r}')
        if cfg.get('init', 'trunc_normal') not in _PROMPT_INITS:
            raise ValueError(f'prompt_cfg.init must be one of {_PROMPT_INITS}'
                             f', got {cfg["init"]!r}')
        self._num_prompts = t
        self.prompts = nn.ParameterList(
            [nn.Parameter(torch.zeros(t, c)) for c in self.stage_channels])
        self.init_prompts()

    # ------------------------------------------------------------ prompts
    def init_prompts(self) -> None:
        """(Re-)initialize the prompts as ``prompt_cfg`` says.

        Called once at construction (not by ``init_weights``, so loading a
        teacher checkpoint is never followed by a reset).
        """
        if self.prompts is None:
            return
        init = self.prompt_cfg.get('init', 'trunc_normal')
        std = float(self.prompt_cfg.get('std', 0.02))
        kh, kw = self.patch_embed.projection.kernel_size
        with torch.no_grad():
            for p in self.prompts:
                if init == 'zeros':
                    p.zero_()
                elif init == 'trunc_normal':
                    trunc_normal_(p, std=std, a=-2 * std, b=2 * std)
                else:
                    bound = self.prompt_cfg.get('bound')
                    if bound is None:
                        bound = math.sqrt(6.0 / (3 * kh * kw + p.shape[1]))
                    p.uniform_(-bound, bound)

    @property
    def prompts_enabled(self) -> bool:
        """True when prompts exist and are not suspended by
        :meth:`without_prompts`."""
        return self.prompts is not None and self._prompts_active

    @property
    def num_prompt_tokens(self) -> int:
        """``t`` while prompts are active, else 0 (the number of trailing
        prompt tokens in what ``token_out`` receives)."""
        return self._num_prompts if self.prompts_enabled else 0

    @contextmanager
    def without_prompts(self) -> Iterator['PromptedSwinTransformer']:
        """Run the plain Swin inside the block (e.g. to read the teacher's
        own embedding); restores the previous state on exit."""
        previous = self._prompts_active
        self._prompts_active = False
        try:
            yield self
        finally:
            self._prompts_active = previous

    # ------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        prompts = list(self.prompts) if self.prompts_enabled else None
        return self.forward_with_prompts(x, prompts)

    def forward_with_prompts(
            self, x: torch.Tensor,
            prompts: Optional[Sequence[torch.Tensor]] = None
    ) -> Tuple[torch.Tensor, ...]:
        """Forward with explicit per-stage prompts.

        Args:
            x (Tensor): ``(B, 3, H, W)`` images.
            prompts (Sequence[Tensor], optional): One ``(t, C_i)`` or
                ``(B, t, C_i)`` tensor per stage (``t`` may be 0, the same
                in every stage); None runs mmpretrain's own stage forward.

        Returns:
            tuple[Tensor]: ``(B, C_i, H_i, W_i)`` maps for ``out_indices``
            (never containing prompts).
        """
        if prompts is not None and len(prompts) != self.num_layers:
            raise ValueError(f'Expected {self.num_layers} prompt tensors '
                             f'(one per stage), got {len(prompts)}')
        x, hw_shape = self.patch_embed(x)
        if self.use_abs_pos_embed:
            x = x + resize_pos_embed(
                self.absolute_pos_embed, self.patch_resolution, hw_shape,
                self.interpolate_mode, self.num_extra_tokens)
        x = self.drop_after_pos(x)

        last = self.num_layers - 1
        outs = []
        for i, stage in enumerate(self.stages):
            p = None
            if prompts is None:
                x, hw_shape = stage(
                    x, hw_shape, do_downsample=self.out_after_downsample)
            else:
                p = prompts[i]
                if p.dim() == 2:
                    p = p.unsqueeze(0).expand(x.shape[0], *p.shape)
                for block in stage.blocks:
                    x, p = prompted_swin_block(block, x, p, hw_shape)
                if stage.downsample is not None and self.out_after_downsample:
                    # prompts are dropped at patch merging
                    x, hw_shape = stage.downsample(x, hw_shape)
            if i == last:
                tokens = x if p is None else torch.cat([x, p], dim=1)
                if i in self.out_indices:
                    tokens = getattr(self, f'norm{i}')(tokens)
                tokens = self.token_out(tokens)
                self.token_grid = (int(hw_shape[0]), int(hw_shape[1]))
                spatial = tokens[:, :hw_shape[0] * hw_shape[1]]
            elif i in self.out_indices:
                spatial = getattr(self, f'norm{i}')(x)
            if i in self.out_indices:
                out = spatial.reshape(-1, *hw_shape, self.num_features[i])
                outs.append(out.permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None and not self.out_after_downsample:
                x, hw_shape = stage.downsample(x, hw_shape)
        return tuple(outs)

    # ------------------------------------------------------------ helpers
    def _final_grid(self, hw: Sequence[int]) -> Tuple[int, int]:
        """Final-stage ``(H, W)`` for a patch grid ``hw`` (runs the patch
        merging layers on a zero map; they hold no state)."""
        h, w = int(hw[0]), int(hw[1])
        with torch.no_grad():
            for stage in self.stages:
                if stage.downsample is not None:
                    dummy = torch.zeros(1, h * w, stage.embed_dims)
                    _, (h, w) = stage.downsample(dummy, (h, w))
        return int(h), int(w)

    def train(self, mode: bool = True) -> 'PromptedSwinTransformer':
        super().train(mode)
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              *args, **kwargs):
        """Load like ``mmpretrain.SwinTransformer``, plus:

        * prompts missing from the checkpoint (a plain Swin checkpoint) keep
          their fresh initialization, so strict loading works;
        * mmpretrain's renames of old checkpoints (version < 3), which its
          own method applies to the exact class only.
        """
        version = local_metadata.get('version', None)
        if version is None or version < 2:
            last = len(self.stages) - 1
            for k in list(state_dict):
                if k.startswith(prefix + 'norm.'):
                    new = prefix + f'norm{last}.' + k[len(prefix + 'norm.'):]
                    state_dict[new] = state_dict.pop(k)
        if version is None or version < 3:
            for k in [k for k in state_dict
                      if k.startswith(prefix) and 'attn_mask' in k]:
                del state_dict[k]
        if self.prompts is not None:
            filled = []
            for i, p in enumerate(self.prompts):
                key = f'{prefix}prompts.{i}'
                if key not in state_dict:
                    state_dict[key] = p.detach().clone()
                    filled.append(key)
            if filled:
                MMLogger.get_current_instance().info(
                    f'PromptedSwinTransformer: {len(filled)} prompt tensors '
                    'not in the checkpoint keep their fresh initialization.')
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      *args, **kwargs)

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """As mmpretrain's, with ``prompts.<i>`` at the depth of stage
        ``i``'s first block (for layer-wise lr decay)."""
        if param_name.startswith(prefix + 'prompts.'):
            stage_id = int(param_name[len(prefix + 'prompts.'):].split('.')[0])
            return sum(self.depths[:stage_id]) + 1, sum(self.depths) + 2
        return super().get_layer_depth(param_name, prefix)

"""Face ViT (insightface arcface_torch layout) with optional APT prompts."""
import contextlib
from typing import Iterator, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor

from mmfacekd.registry import MODELS

__all__ = ['FaceViT']

# insightface arcface_torch `get_model` settings (all: 112x112, patch 9).
ARCH_SETTINGS = {
    'vit_t': dict(embed_dim=256, depth=12, num_heads=8, drop_path_rate=0.1,
                  mask_ratio=0.1),
    'vit_t_dp005_mask0': dict(embed_dim=256, depth=12, num_heads=8,
                              drop_path_rate=0.05, mask_ratio=0.0),
    'vit_s': dict(embed_dim=512, depth=12, num_heads=8, drop_path_rate=0.1,
                  mask_ratio=0.1),
    'vit_s_dp005_mask_0': dict(embed_dim=512, depth=12, num_heads=8,
                               drop_path_rate=0.05, mask_ratio=0.0),
    'vit_b': dict(embed_dim=512, depth=24, num_heads=8, drop_path_rate=0.1,
                  mask_ratio=0.1),
}


class _PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution -> (B, N, D) tokens."""

    def __init__(self, img_size: int, patch_size: int, embed_dim: int):
        super().__init__()
        self.img_size = img_size
        self.grid = img_size // patch_size
        self.num_patches = self.grid * self.grid
        self.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(
                f'FaceViT expects {self.img_size}x{self.img_size} inputs, got '
                f'{tuple(x.shape[-2:])}; set `img_size` (or the data '
                'preprocessor `resize_to`) consistently.')
        return self.proj(x).flatten(2).transpose(1, 2)


class _Attention(nn.Module):
    """Multi-head self-attention (no qkv bias), softmax in float32."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads)**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads,
                                  d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0].float(), qkv[1].float(), qkv[2].float()
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out.to(x.dtype))


class _Mlp(nn.Module):
    """fc1 -> ReLU6 -> fc2 (insightface's ViT uses ReLU6)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.ReLU6()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    """Pre-norm Transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float,
                 drop_path: float):
        super().__init__()
        # registration order = insightface's state_dict order
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


@MODELS.register_module()
class FaceViT(BaseModule):
    """Vision Transformer for 112x112 faces, insightface-compatible.

    Module names, parameter shapes and ``state_dict`` order equal those of
    insightface arcface_torch's ``VisionTransformer`` (``vit_t``, ``vit_s``,
    ``vit_b``: patch 9 -> 12x12 = 144 tokens, no class token, LayerNorm,
    ReLU6 MLP, qkv without bias, a ``feature`` head Linear-BN-Linear-BN over
    the flattened tokens), so a released ``backbone.pth`` loads strictly
    (through the distiller's ``teacher_revise_keys=[(r'^', 'backbone.')]``).
    During training, ``mask_ratio`` of the tokens are randomly dropped
    before the blocks and replaced by ``mask_token`` afterwards, as in
    insightface; evaluation never masks.

    **APT** (CAKD, ACM MM 2023): with ``prompt_cfg`` the blocks are split
    into ``groups`` contiguous groups; ``num_prompts`` fresh learnable prompt
    tokens are appended to the sequence at the start of each group, attend
    and are attended to like tokens, and are dropped at the end of the group
    (the ViT analogue of Swin's per-stage prompts, which are dropped at patch
    merging). The prompts live in ``prompts.<group>`` (an
    ``nn.ParameterList``), so every pretrained key is unchanged and the
    embedding head only ever sees the patch tokens.

    ``token_out`` (an ``nn.Identity``) receives the final LayerNorm-ed
    tokens ``(B, N + t)``: the N patch tokens in row-major order, then the
    last group's t prompt outputs — record ``teacher.backbone.token_out`` to
    get "the last stage's tokens plus its prompt outputs". ``token_grid`` and
    ``num_prompt_tokens`` describe that tensor. ``without_prompts()``
    switches the prompts off temporarily; then the output is bit-identical to
    the same weights without ``prompt_cfg``.

    Args:
        arch (str | dict): ``'vit_t'``, ``'vit_s'``, ``'vit_b'`` (or the
            ``*_dp005_mask*`` variants), or a dict with ``embed_dim``,
            ``depth``, ``num_heads`` (and optionally ``drop_path_rate``,
            ``mask_ratio``). Defaults to 'vit_t'.
        img_size (int): Input side. Defaults to 112.
        patch_size (int): Patch side. Defaults to 9.
        num_features (int): Embedding size. Defaults to 512.
        embed_dim, depth, num_heads (int, optional): Override the arch's
            values (CPU-sized models). Defaults to None.
        mlp_ratio (float): Defaults to 4.0.
        drop_path_rate (float, optional): Overrides the arch's value.
        mask_ratio (float, optional): Overrides the arch's value.
        prompt_cfg (dict, optional): ``num_prompts`` (t), ``groups``
            (default 1; must divide into the depth), ``init``
            (``'trunc_normal'`` | ``'zeros'`` | ``'uniform'``), ``std``
            (default 0.02). Defaults to None (no prompts, no extra keys).
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'vit_t',
                 img_size: int = 112,
                 patch_size: int = 9,
                 num_features: int = 512,
                 embed_dim: Optional[int] = None,
                 depth: Optional[int] = None,
                 num_heads: Optional[int] = None,
                 mlp_ratio: float = 4.0,
                 drop_path_rate: Optional[float] = None,
                 mask_ratio: Optional[float] = None,
                 prompt_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if isinstance(arch, str):
            if arch not in ARCH_SETTINGS:
                raise KeyError(f'Unknown FaceViT arch {arch!r}; choose from '
                               f'{sorted(ARCH_SETTINGS)} or give a dict.')
            arch = ARCH_SETTINGS[arch]
        arch = dict(arch)
        for key, value in (('embed_dim', embed_dim), ('depth', depth),
                           ('num_heads', num_heads)):
            if value is not None:
                arch[key] = value
        self.embed_dim = embed_dim = arch['embed_dim']
        depth, num_heads = arch['depth'], arch['num_heads']
        dpr_max = arch.get('drop_path_rate', 0.0) \
            if drop_path_rate is None else drop_path_rate
        self.mask_ratio = arch.get('mask_ratio', 0.0) \
            if mask_ratio is None else mask_ratio
        self.num_features = num_features

        # registration order = insightface's state_dict order
        self.patch_embed = _PatchEmbed(img_size, patch_size, embed_dim)
        self.num_patches = num_patches = self.patch_embed.num_patches
        self.token_grid: Tuple[int, int] = (self.patch_embed.grid, ) * 2
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, embed_dim))
        dpr = torch.linspace(0, dpr_max, depth).tolist()
        self.blocks = nn.ModuleList(
            [_Block(embed_dim, num_heads, mlp_ratio, dpr[i])
             for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.feature = nn.Sequential(
            nn.Linear(embed_dim * num_patches, embed_dim, bias=False),
            nn.BatchNorm1d(embed_dim, eps=2e-5),
            nn.Linear(embed_dim, num_features, bias=False),
            nn.BatchNorm1d(num_features, eps=2e-5))
        # kept for insightface's key layout; without masking it gets no
        # gradient, and DDP refuses a trainable parameter outside the graph
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim),
                                       requires_grad=self.mask_ratio > 0)
        self.token_out = nn.Identity()

        self.prompt_cfg = dict(prompt_cfg) if prompt_cfg else None
        self._prompts_suspended = 0
        self.prompts: Optional[nn.ParameterList] = None
        self.group_bounds = [(0, depth)]
        if self.prompt_cfg:
            t = int(self.prompt_cfg.get('num_prompts', 0))
            groups = int(self.prompt_cfg.get('groups', 1))
            if t < 1 or groups < 1 or groups > depth:
                raise ValueError(
                    f'FaceViT prompt_cfg needs num_prompts >= 1 and 1 <= '
                    f'groups <= depth ({depth}); got {self.prompt_cfg}')
            edges = torch.linspace(0, depth, groups + 1).round().long()
            self.group_bounds = [(int(a), int(b))
                                 for a, b in zip(edges[:-1], edges[1:])]
            self.prompts = nn.ParameterList(
                [nn.Parameter(torch.zeros(t, embed_dim))
                 for _ in range(groups)])
            self.init_prompts()
        self._insightface_init()

    # ----------------------------------------------------------------- init
    def _insightface_init(self) -> None:
        nn.init.normal_(self.mask_token, std=0.02)
        trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def init_prompts(self) -> None:
        """(Re-)initialize the prompts as ``prompt_cfg`` says."""
        if self.prompts is None:
            return
        init = self.prompt_cfg.get('init', 'trunc_normal')
        std = float(self.prompt_cfg.get('std', 0.02))
        for p in self.prompts:
            if init == 'trunc_normal':
                trunc_normal_(p, std=std)
            elif init == 'zeros':
                nn.init.zeros_(p)
            elif init == 'uniform':
                bound = (6.0 / (p.shape[0] + p.shape[1]))**0.5
                nn.init.uniform_(p, -bound, bound)
            else:
                raise ValueError(f"prompt_cfg.init must be 'trunc_normal', "
                                 f"'zeros' or 'uniform', got {init!r}")

    def init_weights(self) -> None:
        # weights are initialized at construction (insightface's scheme);
        # prompts are never reset here, so loading then init keeps them
        super().init_weights()

    # -------------------------------------------------------------- prompts
    @property
    def prompts_enabled(self) -> bool:
        """True when prompts exist and are not suspended."""
        return self.prompts is not None and self._prompts_suspended == 0

    @property
    def num_prompt_tokens(self) -> int:
        """Prompt tokens at ``token_out`` (0 without active prompts)."""
        return self.prompts[-1].shape[0] if self.prompts_enabled else 0

    @contextlib.contextmanager
    def without_prompts(self) -> Iterator[None]:
        """Run the plain ViT inside this context (nestable)."""
        self._prompts_suspended += 1
        try:
            yield
        finally:
            self._prompts_suspended -= 1

    # -------------------------------------------------------------- forward
    @staticmethod
    def _random_masking(x: Tensor, ratio: float) -> Tuple[Tensor, Tensor]:
        """Keep a random ``1 - ratio`` of the tokens of each sample."""
        b, n, d = x.shape
        keep = int(n * (1 - ratio))
        order = torch.argsort(torch.rand(b, n, device=x.device), dim=1)
        restore = torch.argsort(order, dim=1)
        kept = torch.gather(x, 1, order[:, :keep, None].expand(-1, -1, d))
        return kept, restore

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        x = self.patch_embed(x) + self.pos_embed
        restore = None
        if self.training and self.mask_ratio > 0:
            x, restore = self._random_masking(x, self.mask_ratio)
        n = x.shape[1]
        use_prompts = self.prompts_enabled
        for g, (start, stop) in enumerate(self.group_bounds):
            if use_prompts:
                x = torch.cat([x[:, :n], self.prompts[g].expand(b, -1, -1)
                               .to(x.dtype)], dim=1)
            for blk in self.blocks[start:stop]:
                x = blk(x)
        x = self.norm(x.float())
        if restore is not None:
            extra = x[:, n:]
            fill = self.mask_token.expand(b, restore.shape[1] - n, -1)
            x = torch.cat([x[:, :n], fill.to(x.dtype)], dim=1)
            x = torch.gather(x, 1, restore[..., None].expand(-1, -1,
                                                             x.shape[2]))
            x = torch.cat([x, extra], dim=1)
        x = self.token_out(x)
        patches = x[:, :self.num_patches]
        return self.feature(patches.reshape(b, -1))

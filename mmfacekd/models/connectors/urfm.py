"""URFM — the Unified Receptive Fields Mapping module of CAKD (ACM MM 2023).

CAKD's URFM turns the pixel features of one network (a CNN feature map or the
tokens of a Transformer) into ``L`` *local features* with an attention whose
queries are ``L`` learnable local centers, biased by a facial positional
encoding. Only the abstract of the paper and a third-party note are public;
every detail that is not public is a project decision, stated below (and in
``docs/papers.md`` §2) with its reason.

Formula (per head; one head by default)::

    f_j  = LN(x_j W_in)                            # pixel features -> d
    e_ij = ((c_i W_q + b_ij) · (f_j W_k)) / sqrt(d_head)
    h_i  = sum_j softmax_j(e_ij) · f_j W_v         # (B, L, d)
    b_ij = P[ I(D(i, j) / unit) ]                  # facial positional encoding
    D(i, j) = ||a_i - p_j|| + gamma_face · min_k ||p_j - l_k||

with ``a_i`` the anchor of center ``i``, ``p_j`` the position of pixel ``j``,
``l_k`` the five ArcFace template landmarks, ``I`` iRPE's piecewise index
function (:func:`piecewise_index`) and ``P`` a learnable bucket table.
"""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmfacekd.registry import MODELS
from mmfacekd.structures.face_template import ARCFACE_TEMPLATE_112

__all__ = ['URFM', 'piecewise_index', 'flatten_pixel_features',
           'grid_positions']

#: side length (px) of the common face frame all positions live in
FACE_FRAME = 112.0


def piecewise_index(x: Union[torch.Tensor, float], alpha: float, beta: float,
                    gamma: float) -> torch.Tensor:
    r"""iRPE's piecewise index function (Wu et al., "Rethinking and Improving
    Relative Position Encoding for Vision Transformer", ICCV 2021, eq. 18).

    .. math::

        g(x) = \begin{cases}
            [x] & |x| \le \alpha \\
            \mathrm{sign}(x)\,\min\!\Big(\beta,\;
              \big[\alpha + \frac{\ln(|x|/\alpha)}{\ln(\gamma/\alpha)}
              (\beta - \alpha)\big]\Big) & |x| > \alpha
        \end{cases}

    ``[·]`` is rounding (``torch.round``, half to even). Exact (identity)
    indices up to ``alpha``, logarithmically coarser ones beyond, reaching
    ``beta`` at ``|x| = gamma`` and clipped there. As in iRPE's code, the
    result is an integer and the clip is at ``floor(beta)`` (a non-integer
    ``beta`` such as 3.8 clips to 3), so values lie in
    ``[-floor(beta), floor(beta)]``.

    Args:
        x (Tensor | float): Relative positions or distances (any shape).
        alpha, beta, gamma (float): ``0 < alpha <= beta``, ``alpha < gamma``.
            iRPE's default ratio is ``alpha:beta:gamma = 1:2:8``.

    Returns:
        Tensor: ``long`` bucket indices, the shape of ``x``.
    """
    if not (0 < alpha <= beta and alpha < gamma):
        raise ValueError(f'piecewise_index needs 0 < alpha <= beta and '
                         f'alpha < gamma, got {alpha}, {beta}, {gamma}')
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.double()
    ax = x.abs()
    near = torch.round(x)
    # log(|x| / alpha) is only used where |x| > alpha; clamp avoids log(0)
    far = torch.round(alpha + torch.log(ax.clamp(min=alpha) / alpha)
                      / math.log(gamma / alpha) * (beta - alpha))
    far = torch.sign(x) * far.clamp(max=math.floor(beta))
    return torch.where(ax <= alpha, near, far).long()


def grid_positions(height: int, width: int,
                   frame: float = FACE_FRAME) -> torch.Tensor:
    """Centres of the cells of a ``height x width`` grid laid over the
    ``frame x frame`` face frame, row-major, as ``(height*width, 2)`` (x, y)
    in frame pixels."""
    ys = (torch.arange(height, dtype=torch.float64) + 0.5) * frame / height
    xs = (torch.arange(width, dtype=torch.float64) + 0.5) * frame / width
    gy, gx = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


def flatten_pixel_features(
        x: torch.Tensor,
        token_grid: Optional[Sequence[int]] = None,
        num_extra_tokens: Optional[int] = None
) -> Tuple[torch.Tensor, Tuple[int, int], int]:
    """Bring a CNN map or a token sequence into one layout.

    Args:
        x (Tensor): ``(B, C, H, W)`` map or ``(B, N, C)`` tokens, spatial
            tokens first (row-major), then ``t`` non-spatial tokens (prompt
            outputs).
        token_grid (Sequence[int], optional): ``(H, W)`` of the spatial
            tokens. With it the number of extra tokens is ``N - H*W``.
        num_extra_tokens (int, optional): Number of trailing non-spatial
            tokens; needed (0 if None) when ``token_grid`` is not given, the
            grid is then inferred as a square. When both are given they must
            agree.

    Returns:
        tuple: ``(tokens (B, N, C), (H, W), t)`` — spatial tokens first.
    """
    if x.dim() == 4:
        b, c, h, w = x.shape
        return x.flatten(2).transpose(1, 2), (h, w), 0
    if x.dim() != 3:
        raise ValueError(f'Expected a (B, C, H, W) map or (B, N, C) tokens, '
                         f'got shape {tuple(x.shape)}')
    n = x.shape[1]
    if token_grid is not None:
        h, w = (int(v) for v in token_grid)
        extra = n - h * w
        if extra < 0 or (num_extra_tokens is not None
                         and extra != num_extra_tokens):
            raise ValueError(
                f'{n} tokens do not match token_grid={tuple(token_grid)} '
                f'with num_extra_tokens={num_extra_tokens}')
        return x, (h, w), extra
    extra = int(num_extra_tokens or 0)
    side = math.isqrt(max(n - extra, 0))
    if side * side != n - extra or side == 0:
        raise ValueError(
            f'{n} tokens minus {extra} extra tokens is not a square grid; '
            'set token_grid=(H, W)')
    return x, (side, side), extra


@MODELS.register_module()
class URFM(BaseModule):
    """Unified Receptive Fields Mapping (CAKD, ACM MM 2023).

    Maps ``(B, C, H, W)`` CNN maps or ``(B, N, C)`` token sequences (spatial
    tokens row-major, then ``t`` prompt outputs) to ``L`` local features
    ``(B, L, embed_dims)``. The formula is in the module docstring. The
    attention of the last forward pass is kept in :attr:`last_attn`
    ``(B, num_heads, L, N)`` (detached) for statistics.

    Project decisions (the paper's details are not public):

    * **Common face frame.** Every position (pixel/token centres, center
      anchors, landmarks) is in pixels of the 112x112 aligned face, whatever
      the input resolution or feature grid; a cell of an ``H x W`` grid is
      centred at ``((w + .5) * 112 / W, (h + .5) * 112 / H)``. So a 12x12 ViT
      teacher, a 7x7 Swin teacher and a 7x7 or 14x14 CNN student share one
      geometry, and a center means the same face region in both branches.
      (A grid that does not cover the input exactly, e.g. insightface ViT's
      12 patches of 9 px = 108 px, is approximated by the uniform layout.)
    * **Centers and anchors.** ``L = prod(center_grid)`` centers (7x7 = 49 by
      default); center ``i``'s anchor is the centre of its cell in the
      ``center_grid`` over the face frame. The centers themselves are free
      learnable vectors (init N(0, 0.02²)), not tied to their anchors except
      through the positional encoding.
    * **Distance.** ``D = D_geo + face_scale * D_face`` with ``D_geo`` the
      Euclidean distance between center ``i``'s anchor and pixel ``j`` and
      ``D_face`` the distance from **pixel j** to the nearest landmark
      (``face_ref='pixel'``): then the encoding tells a center which pixels
      sit on facial structure (eyes, nose, mouth) and not only how far they
      are. With ``face_ref='anchor'`` the anchor's landmark distance is used
      instead (it only shifts whole rows of ``D``). Landmarks default to the
      five points of the ArcFace 112x112 template (docs/formats.md §6).
      ``face_scale = 1``: both distances are in frame pixels and weigh the
      same; the paper's gamma is not public.
    * **Bucketing.** Distances are divided by ``distance_unit`` (4 px by
      default: one cell of a 28x28 lattice, the finest map a 112x112 face
      gives at stride 4) and bucketed by :func:`piecewise_index` with
      ``alpha:beta:gamma = 4:8:32`` (iRPE's 1:2:8 ratio): exact buckets
      within 16 px (one 7x7 cell) of the anchor, logarithmic up to 128 px,
      i.e. ``floor(beta) + 1 = 9`` distance buckets. Non-spatial tokens (the
      prompts) get one extra dedicated "no position" bucket (iRPE's bucket for
      skip tokens), so the table has ``floor(beta) + 2`` rows.
    * **Encoding table.** ``P`` is ``(num_buckets, embed_dims)``; row
      ``I(D(i, j))`` is added to center ``i``'s query when it meets key
      ``j`` — docs/papers.md's "b_i added to the query" with the bucket
      depending on the (center, pixel) pair, i.e. iRPE's *contextual* mode
      ``e_ij += (f_j W_k) · P[I(D)]``. With several heads each head uses its
      ``embed_dims / num_heads`` slice.
    * **Locality prior at init** (``locality_init = tau``, default 1). With
      ``P = 0`` (iRPE's init) and small weights every center would attend
      uniformly at the start, all ``L`` local features would be identical,
      ``L_Attn`` of :class:`CAKDLoss` would be 0 and every center would get
      the same gradient — a symmetric start that training escapes slowly,
      if at all. Because ``W_k`` has a bias, the formula already contains a
      per-bucket scalar term ``P[b] · b_k``; it is initialized to
      ``-tau * b`` (per head, after the ``1/sqrt(d_head)`` scaling) by
      setting ``b_k = sqrt(d_head) u`` and ``P[b] = -tau b u`` for a unit
      vector ``u`` (``1/sqrt(d_head)`` in every coordinate). So each center
      starts as a soft local pooling around its anchor (pixels in farther
      buckets get ``e^-tau`` less weight per bucket), the same face region in
      both branches, which is exactly what URFM is for; everything stays
      learnable. The prompts' bucket starts like the farthest distance
      bucket. ``locality_init=0`` gives iRPE's zero init.
    * **Heads.** One head by default (the paper's formula, scaled by
      ``1/sqrt(d)``); ``num_heads > 1`` splits ``d`` into heads scaled by
      ``1/sqrt(d/num_heads)`` and concatenates their outputs. No output
      projection (the paper's ``h_i`` is a convex combination of ``f W_v``).
    * **Input projection.** ``W_in`` (a linear map of the channels) followed
      by LayerNorm, so that a BatchNorm'ed CNN map and LayerNorm'ed
      Transformer tokens enter the attention at comparable scales.

    Args:
        in_channels (int): Channels of the input map / tokens.
        embed_dims (int): ``d``, width of the local features. The two URFMs
            of a distiller must share it (the MSA of :class:`CAKDLoss` is
            shared).
        center_grid (Sequence[int]): ``(rows, cols)`` of the local centers.
            Defaults to (7, 7).
        num_heads (int): Attention heads. Defaults to 1.
        token_grid (Sequence[int], optional): ``(H, W)`` of spatial tokens
            (tokens only); the number of extra tokens is then ``N - H*W``.
            Defaults to None (square grid after ``num_extra_tokens``).
        num_extra_tokens (int, optional): Trailing non-spatial tokens
            (tokens only). Defaults to None (inferred from ``token_grid``,
            0 without it).
        pos_encoding (bool): Use the facial positional encoding. Defaults
            to True.
        face_distance (bool): Add ``face_scale * D_face`` to ``D``. Defaults
            to True.
        face_scale (float): ``gamma_face``. Defaults to 1.0.
        face_ref (str): ``'pixel'`` or ``'anchor'`` (see above). Defaults to
            ``'pixel'``.
        landmarks (Sequence, optional): ``(x, y)`` points in the 112x112
            frame. Defaults to the ArcFace template.
        distance_unit (float): Frame pixels per distance unit. Defaults
            to 4.0.
        alpha, beta, gamma (float): Piecewise index coefficients. Defaults
            to 4, 8, 32.
        locality_init (float): ``tau`` of the locality prior (0: none).
            Defaults to 1.0.
        init_cfg (dict, optional): MMEngine init config.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int = 256,
                 center_grid: Sequence[int] = (7, 7),
                 num_heads: int = 1,
                 token_grid: Optional[Sequence[int]] = None,
                 num_extra_tokens: Optional[int] = None,
                 pos_encoding: bool = True,
                 face_distance: bool = True,
                 face_scale: float = 1.0,
                 face_ref: str = 'pixel',
                 landmarks: Optional[Sequence[Sequence[float]]] = None,
                 distance_unit: float = 4.0,
                 alpha: float = 4.0,
                 beta: float = 8.0,
                 gamma: float = 32.0,
                 locality_init: float = 1.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims={embed_dims} is not divisible by '
                             f'num_heads={num_heads}')
        if face_ref not in ('pixel', 'anchor'):
            raise ValueError(f"face_ref must be 'pixel' or 'anchor', got "
                             f'{face_ref!r}')
        piecewise_index(0.0, alpha, beta, gamma)  # validates the coefficients
        self.in_channels = in_channels
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.center_grid = tuple(int(v) for v in center_grid)
        self.num_centers = self.center_grid[0] * self.center_grid[1]
        self.token_grid = None if token_grid is None else tuple(token_grid)
        self.num_extra_tokens = num_extra_tokens
        self.pos_encoding = pos_encoding
        self.face_distance = face_distance
        self.face_scale = float(face_scale)
        self.face_ref = face_ref
        self.distance_unit = float(distance_unit)
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.locality_init = float(locality_init)
        lm = ARCFACE_TEMPLATE_112 if landmarks is None else landmarks
        self.register_buffer(
            'landmarks', torch.tensor(np.array(lm, dtype=np.float64)).reshape(
                -1, 2), persistent=False)
        self.register_buffer('anchors', grid_positions(*self.center_grid),
                             persistent=False)
        #: distance buckets ``0..floor(beta)`` + the no-position bucket
        self.num_buckets = math.floor(beta) + 2

        self.in_proj = nn.Linear(in_channels, embed_dims)
        self.norm = nn.LayerNorm(embed_dims)
        self.centers = nn.Parameter(torch.zeros(self.num_centers, embed_dims))
        self.q = nn.Linear(embed_dims, embed_dims)
        self.k = nn.Linear(embed_dims, embed_dims)
        self.v = nn.Linear(embed_dims, embed_dims)
        self.pos_table = (nn.Parameter(torch.zeros(self.num_buckets,
                                                   embed_dims))
                          if pos_encoding else None)
        self._bucket_cache: Dict[tuple, torch.Tensor] = {}
        self.last_attn: Optional[torch.Tensor] = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.centers, std=0.02)
        for lin in (self.in_proj, self.q, self.k, self.v):
            nn.init.trunc_normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)
        if self.pos_table is None:
            return
        nn.init.zeros_(self.pos_table)
        if self.locality_init:
            nh, dh = self.num_heads, self.embed_dims // self.num_heads
            nb = self.num_buckets
            u = torch.full((dh, ), dh**-0.5)
            # distance buckets 0..nb-2; the no-position bucket nb-1 is set
            # like the farthest distance bucket
            steps = torch.arange(nb, dtype=torch.float32).clamp(max=nb - 2)
            with torch.no_grad():
                self.k.bias.copy_((u * dh**0.5).repeat(nh))
                self.pos_table.copy_(
                    (-self.locality_init * steps[:, None, None]
                     * u[None, None, :]).expand(nb, nh, dh).reshape(nb, -1))

    def init_weights(self) -> None:
        """Own init (see :meth:`reset_parameters`) unless ``init_cfg``."""
        if self.init_cfg is not None:
            super().init_weights()

    # ------------------------------------------------------------ geometry
    def distances(self, height: int, width: int) -> torch.Tensor:
        """``D(i, j)`` in frame pixels, ``(L, height*width)`` float64."""
        pix = grid_positions(height, width).to(self.anchors.device)
        dist = torch.cdist(self.anchors, pix)
        if self.face_distance:
            ref = pix if self.face_ref == 'pixel' else self.anchors
            d_face = torch.cdist(ref, self.landmarks).min(dim=1).values
            dist = dist + self.face_scale * (d_face[None, :]
                                             if self.face_ref == 'pixel'
                                             else d_face[:, None])
        return dist

    def bucket_indices(self, height: int, width: int,
                       num_extra: int = 0) -> torch.Tensor:
        """Bucket of every (center, pixel) pair, ``(L, H*W + num_extra)``
        long; the trailing non-spatial tokens get bucket ``num_buckets-1``.
        Cached per geometry."""
        key = (height, width, num_extra, self.anchors.device)
        idx = self._bucket_cache.get(key)
        if idx is None:
            dist = self.distances(height, width) / self.distance_unit
            idx = piecewise_index(dist, self.alpha, self.beta, self.gamma)
            if num_extra:
                idx = torch.cat([idx, idx.new_full(
                    (self.num_centers, num_extra), self.num_buckets - 1)], 1)
            self._bucket_cache[key] = idx
        return idx

    # ------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` map or ``(B, N, C)`` tokens -> ``(B, L, d)``."""
        tokens, (h, w), extra = flatten_pixel_features(
            x, self.token_grid, self.num_extra_tokens)
        b, n, _ = tokens.shape
        nh, dh = self.num_heads, self.embed_dims // self.num_heads
        f = self.norm(self.in_proj(tokens))
        k = self.k(f).view(b, n, nh, dh).transpose(1, 2)  # B, nh, N, dh
        v = self.v(f).view(b, n, nh, dh).transpose(1, 2)
        q = self.q(self.centers).view(self.num_centers, nh, dh).transpose(0, 1)
        logits = torch.einsum('hld,bhnd->bhln', q, k)
        if self.pos_table is not None:
            idx = self.bucket_indices(h, w, extra)  # L, N
            table = self.pos_table.view(self.num_buckets, nh, dh)
            # k_j · P[b] for every bucket, then pick bucket I(D(i, j))
            kp = torch.einsum('bhnd,mhd->bhnm', k, table)  # B, nh, N, M
            gather = idx.t().reshape(1, 1, n, self.num_centers).expand(
                b, nh, n, self.num_centers)
            logits = logits + kp.gather(3, gather).transpose(2, 3)
        attn = F.softmax(logits / math.sqrt(dh), dim=-1)
        self.last_attn = attn.detach()
        out = attn @ v  # B, nh, L, dh
        return out.transpose(1, 2).reshape(b, self.num_centers,
                                           self.embed_dims)

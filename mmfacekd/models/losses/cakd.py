"""CAKD's alignment loss (Cross-Architecture KD for face recognition, ACM MM
2023): a shared multi-head self-attention over the URFM local features of
both networks; its attention maps and its outputs are matched by MSE."""
import math
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS

__all__ = ['LocalSelfAttention', 'CAKDLoss']


class LocalSelfAttention(nn.Module):
    """Multi-head self-attention over ``L`` local features that also returns
    its attention maps (``nn.MultiheadAttention`` averages them over heads
    or hides them on its fast path).

    ``softmax(Q K^T / sqrt(d/heads))`` per head, ``Q, K, V`` from one linear
    map of the input, heads concatenated and projected (``out_proj``).
    Initialized like ``nn.MultiheadAttention`` (Xavier-uniform weights, zero
    biases).

    Args:
        embed_dims (int): Feature width ``d``.
        num_heads (int): Heads (``d`` must be divisible by it).
        out_proj (bool): Apply the output projection. Defaults to True.
    """

    def __init__(self, embed_dims: int, num_heads: int = 8,
                 out_proj: bool = True) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims={embed_dims} is not divisible by '
                             f'num_heads={num_heads}')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims) if out_proj else None
        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.zeros_(self.qkv.bias)
        if self.proj is not None:
            nn.init.xavier_uniform_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``(B, L, d)`` -> output ``(B, L, d)``, attention
        ``(B, num_heads, L, L)`` (rows sum to 1)."""
        b, n, d = x.shape
        nh = self.num_heads
        q, k, v = self.qkv(x).view(b, n, 3, nh, d // nh).permute(2, 0, 3, 1, 4)
        attn = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // nh), dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        if self.proj is not None:
            out = self.proj(out)
        return out, attn


@MODELS.register_module()
class CAKDLoss(nn.Module):
    r"""CAKD alignment of the teacher's and the student's local features.

    Both inputs are URFM outputs ``h ∈ (B, L, d)`` (one :class:`URFM` per
    branch, common ``d``). One **shared**, trainable multi-head self-attention
    (:class:`LocalSelfAttention`, owned by this loss) maps each to
    ``MSA(h)`` with ``L x L`` attention maps ``Attn``:

    .. math::
        \mathcal{L} = w \big(\lambda_{attn}\,\mathrm{MSE}(Attn^T, Attn^S)
        + \lambda_{feat}\,\mathrm{MSE}(MSA(h^T), MSA(h^S))\big)

    Project decisions (not public in the paper):

    * **Per-head attention loss.** ``L_Attn`` is the MSE over all heads'
      maps (= the mean of the per-head MSEs), not over head-averaged maps:
      the MSA is shared, so head ``k`` means the same thing in both
      branches, and averaging first would let different per-head patterns
      cancel. Elements are probabilities (rows sum to 1), so ``L_Attn`` is
      numerically much smaller than ``L_Feat`` at ``lambda_attn = 1``.
    * **Normalization** (``normalize=True``): a LayerNorm without affine
      parameters over ``d`` is applied to the local features entering the
      MSA and to the MSA outputs before the MSE. Everything on both sides of
      the MSE is trainable (URFMs, MSA, teacher prompts) and driven only by
      this loss, so without it the loss is minimized trivially by shrinking
      the features (``W_v``, ``out_proj`` -> 0). ``normalize=False`` gives
      the bare formula.
    * **No detach on the teacher side.** Gradients flow into the teacher
      URFM and, through the teacher's tokens, into the teacher's APT
      prompts: APT trains the prompts by the distillation loss itself (the
      teacher "learns to teach"). The teacher backbone weights stay frozen
      because the distiller sets ``requires_grad=False`` on them, not
      because of a detach here.
    * The MSA is trainable by default (PAPERS.md §2: prompts, URFM, MSA and
      student train jointly); ``msa_trainable=False`` freezes it at its
      random init (an ablation that cannot collapse).

    Returns a dict: ``loss`` and the unweighted terms ``attn`` and ``feat``
    (logged as ``distill.<name>.attn`` / ``.feat``).

    Args:
        embed_dims (int): ``d`` of the local features.
        num_heads (int): Heads of the shared MSA. Defaults to 8.
        lambda_attn (float): Weight of ``L_Attn``. Defaults to 1.0.
        lambda_feat (float): Weight of ``L_Feat``. Defaults to 1.0.
        loss_weight (float): Overall weight ``w``. Defaults to 1.0.
        normalize (bool): See above. Defaults to True.
        msa_trainable (bool): Defaults to True.
        out_proj (bool): Output projection in the MSA. Defaults to True.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int = 8,
                 lambda_attn: float = 1.0,
                 lambda_feat: float = 1.0,
                 loss_weight: float = 1.0,
                 normalize: bool = True,
                 msa_trainable: bool = True,
                 out_proj: bool = True) -> None:
        super().__init__()
        self.msa = LocalSelfAttention(embed_dims, num_heads, out_proj)
        self.msa.requires_grad_(msa_trainable)
        self.embed_dims = embed_dims
        self.lambda_attn = float(lambda_attn)
        self.lambda_feat = float(lambda_feat)
        self.loss_weight = float(loss_weight)
        self.normalize = normalize

    def _norm(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, (x.shape[-1], )) if self.normalize else x

    def attend(self, local: Tensor) -> Tuple[Tensor, Tensor]:
        """Shared MSA of one branch: (normalized) output and attention."""
        out, attn = self.msa(self._norm(local))
        return self._norm(out), attn

    def forward(self, student_local: Tensor,
                teacher_local: Tensor) -> Dict[str, Tensor]:
        """Args:
            student_local (Tensor): Student URFM output ``(B, L, d)``.
            teacher_local (Tensor): Teacher URFM output ``(B, L, d)`` (not
                detached, see the class docstring).
        """
        if student_local.shape != teacher_local.shape \
                or student_local.dim() != 3 \
                or student_local.shape[-1] != self.embed_dims:
            raise ValueError(
                'CAKDLoss expects student and teacher local features of one '
                f'(B, L, {self.embed_dims}) shape, got '
                f'{tuple(student_local.shape)} and '
                f'{tuple(teacher_local.shape)}')
        out_s, attn_s = self.attend(student_local)
        out_t, attn_t = self.attend(teacher_local)
        loss_attn = F.mse_loss(attn_s, attn_t)
        loss_feat = F.mse_loss(out_s, out_t)
        loss = self.loss_weight * (self.lambda_attn * loss_attn
                                   + self.lambda_feat * loss_feat)
        return dict(loss=loss, attn=loss_attn.detach(),
                    feat=loss_feat.detach())

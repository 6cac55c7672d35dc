"""CAKD's alignment loss (Cross-Architecture KD for face recognition, ACM MM
2023): a shared multi-head self-attention over the URFM local features of
both networks; its attention maps and its outputs are matched by MSE."""
import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS

__all__ = ['LocalSelfAttention', 'CAKDLoss', 'batch_standardize',
           'off_diagonal_correlation', 'first_component_share']


def batch_standardize(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Standardize every feature of ``(B, ...)`` over the batch: zero mean,
    unit (biased) variance per position, no affine parameters."""
    mean = x.mean(0, keepdim=True)
    var = x.var(0, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def off_diagonal_correlation(x: Tensor, eps: float = 1e-5) -> Tensor:
    """VICReg's covariance term on correlations: ``sum_{i != j} C_ij^2 / d``
    with ``C`` the ``d x d`` channel correlation matrix of ``(..., d)``
    features (every leading index is a sample)."""
    z = x.reshape(-1, x.shape[-1])
    z = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)
    corr = z.t() @ z / z.shape[0]
    off = corr - torch.diag_embed(torch.diagonal(corr))
    return off.pow(2).sum() / corr.shape[0]


@torch.no_grad()
def first_component_share(x: Tensor) -> Tensor:
    """Share of the variance of ``(..., d)`` features (every leading index a
    sample) on their first principal component: ``lambda_max / sum lambda``
    of the ``d x d`` covariance. ``1/d`` for isotropic features, ``1`` for
    a dimensional collapse onto one direction (the CAKD collapse monitor)."""
    z = x.reshape(-1, x.shape[-1]).float()
    z = z - z.mean(0)
    eig = torch.linalg.eigvalsh(z.t() @ z / max(z.shape[0], 1))
    return eig[-1] / eig.sum().clamp_min(1e-12)


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
                 out_proj: bool = True,
                 decorrelation: float = 0.0) -> None:
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
        + \lambda_{feat}\,\mathrm{MSE}(N(MSA(N(h^T))), N(MSA(N(h^S))))
        + \lambda_{dec}\,(c(\cdot^T) + c(\cdot^S))\big)

    with ``N`` the normalization below and ``c`` the optional decorrelation
    term (0 by default, i.e. the paper's two terms).

    Project decisions (not public in the paper):

    * **Per-head attention loss.** ``L_Attn`` is the MSE over all heads'
      maps (= the mean of the per-head MSEs), not over head-averaged maps:
      the MSA is shared, so head ``k`` means the same thing in both
      branches, and averaging first would let different per-head patterns
      cancel. Elements are probabilities (rows sum to 1), so ``L_Attn`` is
      numerically far smaller than ``L_Feat`` at ``lambda_attn = 1``
      (about 1e-3 vs 1 on the demo).
    * **Normalization** ``N`` (``normalize='batch'``): every feature
      (center ``l``, channel ``c``) of the local features entering the MSA
      and of the MSA outputs is standardized over the batch (zero mean, unit
      variance, no affine parameters) before the MSE. Everything on both
      sides of the MSE is trainable (URFMs, MSA, teacher prompts) and driven
      only by this loss, so the bare formula is minimized trivially by
      shrinking the features or making them constant (biases); even with a
      LayerNorm over ``d`` instead (``'layer'``), ``L_Feat`` fell from 1.8 to
      0.006 in 6 demo-sized iterations with all local features identical
      across centers and nearly across images. After batch standardization
      neither scale
      nor a sample-independent output can lower the loss — ``L_Feat``
      becomes ``2 (1 - corr)`` averaged over features, so it only drops when
      the teacher's and the student's features co-vary over the images.
      Batch statistics need ``B > 1`` (a batch of one gives zeros).
      ``'layer'`` (LayerNorm over ``d``, no affine) and ``None`` (the bare
      formula) are available.
    * **Optional decorrelation** (``decorrelation = lambda_dec``, default
      0). Batch standardization still allows *dimensional* collapse: with a
      trainable MSA its outputs became one-dimensional (first principal
      component 100 % of the variance) within 20 iterations (synthetic demo
      data, batch 16, the trained demo IResNet-18 as teacher), both
      branches encoding one shared scalar per image. ``c`` is VICReg's
      covariance term on the standardized MSA outputs of each branch
      (``sum_{i != j} C_ij^2 / d``, ``C`` the channel correlation over all
      ``B * L`` local features); ``0.04`` (VICReg's covariance : invariance
      ratio 1 : 25) kept the first component at about 25 % while ``L_Feat``
      still fell from 2.0 to 0.2. The CAKD configs set it; the paper's
      formula is ``decorrelation=0``. Logged as ``decor``.
    * **No detach on the teacher side.** Gradients flow into the teacher
      URFM and, through the teacher's tokens, into the teacher's APT
      prompts: APT trains the prompts by the distillation loss itself (the
      teacher "learns to teach"). The teacher backbone weights stay frozen
      because the distiller sets ``requires_grad=False`` on them, not
      because of a detach here.
    * The MSA is trainable by default (docs/papers.md §2: prompts, URFM, MSA
      and student train jointly); ``msa_trainable=False`` freezes it at its
      random init (it cannot collapse then; the URFMs still can partly).

    Returns a dict: ``loss`` and the unweighted terms ``attn``, ``feat``
    (and ``decor``), logged as ``distill.<name>.attn`` etc., and the
    collapse monitors ``pc1_s``/``pc1_t``: the share of the variance of each
    branch's MSA outputs on their first principal component
    (:func:`first_component_share`; ``1/d`` isotropic, ``1`` collapsed).

    Args:
        embed_dims (int): ``d`` of the local features.
        num_heads (int): Heads of the shared MSA. Defaults to 8.
        lambda_attn (float): Weight of ``L_Attn``. Defaults to 1.0.
        lambda_feat (float): Weight of ``L_Feat``. Defaults to 1.0.
        loss_weight (float): Overall weight ``w``. Defaults to 1.0.
        normalize (str, optional): ``'batch'``, ``'layer'`` or None (see
            above). Defaults to ``'batch'``.
        msa_trainable (bool): Defaults to True.
        out_proj (bool): Output projection in the MSA. Defaults to True.
        decorrelation (float): ``lambda_dec``. Defaults to 0.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int = 8,
                 lambda_attn: float = 1.0,
                 lambda_feat: float = 1.0,
                 loss_weight: float = 1.0,
                 normalize: Optional[str] = 'batch',
                 msa_trainable: bool = True,
                 out_proj: bool = True,
                 decorrelation: float = 0.0) -> None:
        super().__init__()
        self.msa = LocalSelfAttention(embed_dims, num_heads, out_proj)
        self.msa.requires_grad_(msa_trainable)
        self.embed_dims = embed_dims
        self.lambda_attn = float(lambda_attn)
        self.lambda_feat = float(lambda_feat)
        self.loss_weight = float(loss_weight)
        if normalize not in ('batch', 'layer', None):
            raise ValueError("normalize must be 'batch', 'layer' or None, got "
                             f'{normalize!r}')
        self.normalize = normalize
        self.decorrelation = float(decorrelation)

    def _norm(self, x: Tensor) -> Tensor:
        if self.normalize == 'batch':
            return batch_standardize(x)
        if self.normalize == 'layer':
            return F.layer_norm(x, (x.shape[-1], ))
        return x

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
        # batch statistics and correlations in float32, also under AMP
        with torch.autocast(device_type=student_local.device.type,
                            enabled=False):
            out_s, attn_s = self.attend(student_local.float())
            out_t, attn_t = self.attend(teacher_local.float())
            loss_attn = F.mse_loss(attn_s, attn_t)
            loss_feat = F.mse_loss(out_s, out_t)
            loss = self.lambda_attn * loss_attn + self.lambda_feat * loss_feat
            stats = dict(attn=loss_attn.detach(), feat=loss_feat.detach(),
                         pc1_s=first_component_share(out_s),
                         pc1_t=first_component_share(out_t))
            if self.decorrelation:
                decor = (off_diagonal_correlation(out_s)
                         + off_diagonal_correlation(out_t))
                loss = loss + self.decorrelation * decor
                stats['decor'] = decor.detach()
        return dict(loss=self.loss_weight * loss, **stats)

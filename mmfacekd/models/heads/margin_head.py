"""Margin-softmax classification heads: combined (m1, m2, m3), ArcFace,
CosFace."""
import math
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmfacekd.registry import MODELS


def combined_margin_cosine(
        cosine: torch.Tensor, target: torch.Tensor, m1: float, m2: float,
        m3: float, grad_mode: str = 'straight_through') -> torch.Tensor:
    """Apply the combined margin ``cos(m1·θ + m2) − m3`` to the target logits.

    .. math::
        \\cos\\theta_{y}' = \\cos(m_1\\theta_y + m_2) - m_3

    (ArcFace: m1=1, m2=m, m3=0; CosFace: m1=1, m2=0, m3=m;
    SphereFace-like: m1>1).

    Args:
        cosine (Tensor): (N, C) cosines between embeddings and class weights.
        target (Tensor): (N,) class indices; ``-1`` rows get no margin.
        m1, m2, m3 (float): Multiplicative angular, additive angular and
            additive cosine margins.
        grad_mode (str): ``'straight_through'`` — insightface's
            CombinedMarginLoss: the margin is computed under ``no_grad`` and
            the gradient w.r.t. the cosine is the identity (the margin acts as
            a constant offset). ``'exact'`` — differentiate ``cos(m1·θ + m2)``
            (mmpretrain / TFace); where ``m1·θ + m2 > π`` it falls back to the
            monotonic ``cos θ − m2·sin(m2)`` (the usual ArcFace fallback).
            Defaults to 'straight_through'.

    Returns:
        Tensor: (N, C) cosines with the margin on each target entry.
    """
    if grad_mode not in ('straight_through', 'exact'):
        raise ValueError(f"grad_mode must be 'straight_through' or 'exact', "
                         f'got {grad_mode!r}')
    valid = torch.nonzero(target != -1, as_tuple=True)[0]
    labels = target[valid]
    tgt_cos = cosine[valid, labels]

    def _margin(c: torch.Tensor) -> torch.Tensor:
        if m1 == 1.0 and m2 == 0.0:
            return c - m3
        theta = torch.acos(c.clamp(-1 + 1e-7, 1 - 1e-7))
        out = torch.cos(m1 * theta + m2) - m3
        if grad_mode == 'exact':
            # Beyond π the cosine stops decreasing: use a linear fallback.
            fallback = c - m2 * math.sin(m2) - m3
            out = torch.where(m1 * theta + m2 <= math.pi, out, fallback)
        return out

    if grad_mode == 'exact':
        new_tgt = _margin(tgt_cos)
    else:
        with torch.no_grad():
            delta = _margin(tgt_cos) - tgt_cos
        new_tgt = tgt_cos + delta
    out = cosine.clone()
    out[valid, labels] = new_tgt
    return out


@MODELS.register_module()
class MarginHead(BaseModule):
    """Normalized-softmax head with the combined margin ``(m1, m2, m3)``.

    ``cosine = normalize(x) · normalize(W)ᵀ``; ``logits = s · cosine`` and
    ``margin_logits = s · (cosine with the margin on the target)``. The loss
    is cross-entropy on ``margin_logits`` (label ``-1`` is ignored). Both
    logits are exposed by :meth:`get_logits` so a distiller can read them.

    Args:
        num_classes (int): Number of identities.
        in_channels (int): Embedding size. Defaults to 512.
        s (float): Scale. Defaults to 64.
        m1 (float): Multiplicative angular margin. Defaults to 1.0.
        m2 (float): Additive angular margin (ArcFace). Defaults to 0.5.
        m3 (float): Additive cosine margin (CosFace). Defaults to 0.0.
        grad_mode (str): See :func:`combined_margin_cosine`.
            Defaults to 'straight_through' (insightface).
        loss_weight (float): Weight of the classification loss. Defaults to 1.
        init_cfg (dict, optional): Defaults to normal(std=0.01) weights, as
            insightface's PartialFC.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int = 512,
                 s: float = 64.0,
                 m1: float = 1.0,
                 m2: float = 0.5,
                 m3: float = 0.0,
                 grad_mode: str = 'straight_through',
                 loss_weight: float = 1.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes is None or num_classes <= 0:
            raise ValueError(
                f'{type(self).__name__} needs num_classes > 0, got '
                f'{num_classes}; set '
                '`model.head.num_classes` to the identity count of the '
                'training set (the `property` file of a .rec set).')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.s, self.m1, self.m2, self.m3 = s, m1, m2, m3
        self.grad_mode = grad_mode
        self.loss_weight = loss_weight
        self.weight = self._build_weight()

    def _build_weight(self) -> nn.Parameter:
        """The (C, D) class centres, normal(std=0.01) as insightface."""
        weight = nn.Parameter(torch.empty(self.num_classes, self.in_channels))
        nn.init.normal_(weight, std=0.01)
        return weight

    def init_weights(self) -> None:
        if self.init_cfg is not None:
            super().init_weights()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Return the (N, C) cosine similarity to every class weight.

        The matrix product runs in the autocast dtype when under AMP (as
        insightface's PartialFC); the result is float32, so margins,
        softmax and losses are computed in float32.
        """
        return F.linear(F.normalize(feats), F.normalize(self.weight)).float()

    def get_logits(self, feats: torch.Tensor,
                   gt_label: Optional[torch.Tensor] = None
                   ) -> Dict[str, torch.Tensor]:
        """Return ``logits`` (s·cos) and, with labels, ``margin_logits``."""
        cosine = self.forward(feats)
        out = dict(logits=self.s * cosine)
        if gt_label is not None:
            out['margin_logits'] = self.s * combined_margin_cosine(
                cosine, gt_label, self.m1, self.m2, self.m3, self.grad_mode)
        return out

    def loss_by_logits(self, logits: Dict[str, torch.Tensor],
                       gt_label: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Cross-entropy on the margin logits plus top-1 accuracy (logged)."""
        loss = F.cross_entropy(logits['margin_logits'], gt_label,
                               ignore_index=-1)
        with torch.no_grad():
            valid = gt_label != -1
            acc = (logits['logits'].argmax(1) == gt_label)[valid].float()
            acc = acc.mean() if acc.numel() else loss.new_zeros(())
        return dict(loss_cls=self.loss_weight * loss, accuracy=acc)

    def loss(self, feats: torch.Tensor,
             data_samples: List) -> Dict[str, torch.Tensor]:
        gt_label = stack_gt_labels(data_samples, feats.device)
        return self.loss_by_logits(self.get_logits(feats, gt_label), gt_label)


def stack_gt_labels(data_samples: List, device: torch.device) -> torch.Tensor:
    """Stack ``gt_label`` of data samples into an (N,) long tensor."""
    return torch.cat([ds.gt_label.reshape(-1) for ds in data_samples]).to(
        device=device, dtype=torch.long)


@MODELS.register_module()
class ArcFaceHead(MarginHead):
    """ArcFace (Deng et al. CVPR 2019): ``cos(θ + m)``; m=0.5, s=64.

    Default gradient mode is insightface's ``'straight_through'``; pass
    ``grad_mode='exact'`` for the exact ``cos(θ+m)`` gradient with fallback.
    """

    def __init__(self, num_classes: int, m: float = 0.5, **kwargs) -> None:
        super().__init__(num_classes, m1=1.0, m2=m, m3=0.0, **kwargs)


@MODELS.register_module()
class CosFaceHead(MarginHead):
    """CosFace (Wang et al. CVPR 2018): ``cos θ − m``; m=0.4 (or 0.35),
    s=64."""

    def __init__(self, num_classes: int, m: float = 0.4, **kwargs) -> None:
        super().__init__(num_classes, m1=1.0, m2=0.0, m3=m, **kwargs)

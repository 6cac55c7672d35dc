"""MarginDistillation (Svitov & Alyamkin, 2020): margin softmax over the
teacher's class centers with a per-sample margin set by the teacher."""
import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS
from mmfacekd.utils.checkpoint_safety import load_checkpoint_safely

from ..utils import gather_no_grad
from .utils import BatchLoss, check_center_inputs, prepare_embedding_pair

__all__ = ['MarginDistillationLoss', 'load_class_centers']


def load_class_centers(path: str, key: Optional[str] = None) -> Tensor:
    """L2-normalized (C, D) class centers from a checkpoint.

    Accepts the head checkpoint of ``tools/misc/build_prototype_head.py``
    (``{'state_dict': {'weight': (C, D)}, 'meta': ...}``), a
    :class:`FaceRecognizer` checkpoint (the classifier ``head.weight``, e.g.
    the teacher checkpoint itself) or a bare tensor. ``key`` names the entry
    of the state dict; None tries ``weight``, then ``head.weight``.
    """
    obj = load_checkpoint_safely(path)
    if isinstance(obj, Tensor):
        weight = obj
    else:
        state = obj.get('state_dict', obj)
        keys = [key] if key is not None else ['weight', 'head.weight']
        found = [k for k in keys if k in state]
        if not found:
            raise KeyError(f'{path}: none of the keys {keys} is in the '
                           f'checkpoint (first keys: {list(state)[:5]}); '
                           'set `prototype_key`.')
        weight = state[found[0]]
    if weight.dim() != 2:
        raise ValueError(f'{path}: class centers must be (C, D), got '
                         f'{tuple(weight.shape)}')
    return F.normalize(weight.detach().float(), dim=1)


@MODELS.register_module()
class MarginDistillationLoss(BatchLoss):
    r"""Margin-softmax over the teacher's class centers of
    `MarginDistillation: distillation for margin-based softmax
    <https://arxiv.org/abs/2003.02586>`_ (Svitov & Alyamkin, arXiv 2020).

    The student is classified against the teacher's (frozen, L2-normalized)
    class centers :math:`W^T_c` instead of its own classifier, with an
    additive angular (ArcFace) margin that is set per sample from how close
    the *teacher's* embedding :math:`\hat{t}_i` lies to its class center:

    .. math::
        c_i = \langle \hat{t}_i, W^T_{y_i} \rangle, \qquad
        m_i = m_{min} + (m_{max} - m_{min})
              \frac{\max(c_i, 0)}{\max_j \max(c_j, 0)}

    .. math::
        \cos\theta_{i,c} = \langle \hat{s}_i, W^T_c \rangle, \qquad
        \mathcal{L}_{MD} = -\frac{w}{B} \sum_{i=1}^{B} \log
        \frac{e^{s \cos(\theta_{i,y_i} + m_i)}}
        {e^{s \cos(\theta_{i,y_i} + m_i)}
         + \sum_{c \neq y_i} e^{s \cos\theta_{i,c}}}

    Samples the teacher embeds close to their center (easy samples) get a
    large margin, samples it finds hard a small one; the student thereby
    learns the teacher's angles to the class centers. :math:`s = 64`,
    :math:`m_{min} = 0.2`, :math:`m_{max} = 0.5` as in the authors' code;
    the maximum runs over the (global) batch.

    Deviations from Svitov & Alyamkin (2020), and choices where the paper
    leaves one:

    * **Class centers.** ``prototype_file``: the teacher's classifier
      weights (a teacher :class:`FaceRecognizer` checkpoint, key
      ``head.weight`` — what the authors use) or the class prototypes of
      ``tools/misc/build_prototype_head.py`` (key ``weight``; mean
      L2-normalized teacher embedding per identity) for teachers released
      without a classifier; kept as a non-persistent buffer. Without a file
      (``num_classes`` and ``embed_dim`` given) the centers are running
      statistics of ``teacher.embedding``: persistent buffers
      ``center_sums`` (sum of the L2-normalized teacher embeddings per
      class) and ``center_counts``; the center is the normalized sum, i.e.
      the same prototype as the tool's, accumulated over the images seen
      in training (updated first, in training mode, with the current
      batch; classes not seen yet have a zero center, cosine 0).
    * **Margin.** Per sample as in the authors' code (not one per class);
      :math:`c_i` is clamped at 0 so that margins stay in
      :math:`[m_{min}, m_{max}]`; the teacher cosine uses the same centers.
    * **Gradient of the margin.** ``'straight_through'`` (default, as the
      project's ArcFace heads and insightface: the margin is a constant
      offset of the target logit) or ``'exact'`` (the derivative of
      :math:`\cos(\theta + m)`, with the ArcFace fallback
      :math:`\cos\theta - m \sin m` where :math:`\theta + m > \pi`).
    * **Use.** The paper trains the student with this loss *instead of*
      its own margin softmax: set the distiller's
      ``student_loss_weight=0``; the distiller then neither runs nor trains
      the student's own (C-way) head. Labels ``< 0`` are ignored.
    * ``gather=True``: the batch maximum :math:`\max_j c_j` and the
      running-center update use all ranks (all ranks keep identical
      centers); the cross-entropy itself is per sample. The teacher side
      is detached.

    Args:
        prototype_file (str, optional): Checkpoint with the (C, D) class
            centers (see above). Defaults to None.
        prototype_key (str, optional): Its state-dict key; None tries
            ``weight`` then ``head.weight``. Defaults to None.
        num_classes (int, optional): C; required without a file.
        embed_dim (int, optional): D; required without a file.
        scale (float): Logit scale :math:`s`. Defaults to 64.0.
        m_min (float): Smallest margin (radians). Defaults to 0.2.
        m_max (float): Largest margin (radians). Defaults to 0.5.
        grad_mode (str): ``'straight_through'`` or ``'exact'``.
            Defaults to 'straight_through'.
        gather (bool): Batch maximum and center update over all ranks.
            Defaults to True.
        loss_weight (float): Weight :math:`w`. Defaults to 1.0.
    """

    def __init__(self,
                 prototype_file: Optional[str] = None,
                 prototype_key: Optional[str] = None,
                 num_classes: Optional[int] = None,
                 embed_dim: Optional[int] = None,
                 scale: float = 64.0,
                 m_min: float = 0.2,
                 m_max: float = 0.5,
                 grad_mode: str = 'straight_through',
                 gather: bool = True,
                 loss_weight: float = 1.0) -> None:
        super().__init__(gather=gather, loss_weight=loss_weight)
        if grad_mode not in ('straight_through', 'exact'):
            raise ValueError("grad_mode must be 'straight_through' or "
                             f"'exact', got {grad_mode!r}")
        if m_max < m_min:
            raise ValueError(f'm_max ({m_max}) must be >= m_min ({m_min})')
        self.prototype_file = prototype_file
        self.from_file = prototype_file is not None
        if self.from_file:
            centers = load_class_centers(prototype_file, prototype_key)
            for name, want, got in (('num_classes', num_classes,
                                     centers.size(0)),
                                    ('embed_dim', embed_dim,
                                     centers.size(1))):
                if want is not None and want != got:
                    raise ValueError(f'{prototype_file} holds {got} for '
                                     f'{name}, the config says {want}')
            self.register_buffer('centers', centers, persistent=False)
        else:
            if not num_classes or not embed_dim:
                raise ValueError(
                    'MarginDistillationLoss needs `prototype_file`, or '
                    '`num_classes` and `embed_dim` for running centers of '
                    'the teacher embeddings')
            self.register_buffer('center_sums',
                                 torch.zeros(num_classes, embed_dim))
            self.register_buffer('center_counts', torch.zeros(num_classes))
        self.scale = float(scale)
        self.m_min = float(m_min)
        self.m_max = float(m_max)
        self.grad_mode = grad_mode

    @property
    def num_classes(self) -> int:
        buf = self.centers if self.from_file else self.center_sums
        return buf.size(0)

    def class_centers(self) -> Tensor:
        """Current (C, D) L2-normalized centers (zero rows: unseen)."""
        if self.from_file:
            return self.centers
        return F.normalize(self.center_sums, dim=1)

    @torch.no_grad()
    def _update_centers(self, t_hat: Tensor, labels: Tensor) -> None:
        if self.gather:
            t_hat = gather_no_grad(t_hat)
            labels = gather_no_grad(labels)
        keep = labels >= 0
        t_hat, labels = t_hat[keep], labels[keep]
        self.center_sums.index_add_(0, labels,
                                    t_hat.to(self.center_sums.dtype))
        self.center_counts.index_add_(
            0, labels, torch.ones_like(labels, dtype=self.center_counts.dtype))

    def _margin_cos(self, cos: Tensor, margin: Tensor) -> Tensor:
        """:math:`\\cos(\\theta + m)` of target cosines, per sample."""

        def value(c: Tensor) -> Tensor:
            theta = torch.acos(c.clamp(-1 + 1e-7, 1 - 1e-7))
            return torch.cos(theta + margin)

        if self.grad_mode == 'straight_through':
            with torch.no_grad():
                delta = value(cos) - cos
            return cos + delta
        theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
        fallback = cos - margin * torch.sin(margin)
        return torch.where(theta + margin <= math.pi,
                           torch.cos(theta + margin), fallback)

    def forward(self, student_embedding: Tensor, teacher_embedding: Tensor,
                gt_label: Tensor) -> Dict[str, Tensor]:
        """Compute the MarginDistillation loss.

        Args:
            student_embedding (Tensor): (B, D) student embeddings.
            teacher_embedding (Tensor): (B, D) teacher embeddings (the space
                of the centers).
            gt_label (Tensor): (B, ) identity labels.

        Returns:
            dict: ``loss`` and the statistics ``margin_mean``,
            ``teacher_cos`` (mean :math:`c_i`), ``accuracy`` (student top-1
            over the teacher centers) and, for running centers,
            ``num_centers`` (classes seen).
        """
        s_hat, t_hat = prepare_embedding_pair(
            student_embedding, teacher_embedding, normalize=True,
            flatten=False)
        labels = gt_label.reshape(-1).long()
        dim = (self.centers if self.from_file else self.center_sums).size(1)
        check_center_inputs('MarginDistillationLoss', s_hat, t_hat, labels,
                            self.num_classes, dim)
        dtype = s_hat.dtype
        if self.training and not self.from_file:
            self._update_centers(t_hat, labels)
        centers = self.class_centers().to(dtype)

        valid = labels >= 0
        idx = labels.clamp(min=0)
        with torch.no_grad():
            c_raw = (t_hat * centers[idx]).sum(dim=1)
            c_raw = torch.where(valid, c_raw, torch.zeros_like(c_raw))
            c = c_raw.clamp(min=0)
            c_max = c.max().reshape(1) if c.numel() else c.new_zeros(1)
            if self.gather:
                c_max = gather_no_grad(c_max)
            c_max = c_max.max().clamp(min=torch.finfo(dtype).tiny)
            margin = self.m_min + (self.m_max - self.m_min) * c / c_max

        cos = s_hat @ centers.t()
        target = cos.gather(1, idx.unsqueeze(1)).squeeze(1)
        new_target = self._margin_cos(target, margin)
        new_target = torch.where(valid, new_target, target)
        logits = self.scale * cos.scatter(1, idx.unsqueeze(1),
                                          new_target.unsqueeze(1))
        n_valid = valid.sum()
        ce = F.cross_entropy(logits, torch.where(valid, labels, -1),
                             ignore_index=-1, reduction='sum')
        loss = self.loss_weight * ce / n_valid.clamp(min=1)
        with torch.no_grad():
            denom = n_valid.clamp(min=1).to(dtype)
            hit = (cos.argmax(dim=1) == labels) & valid
            out = dict(loss=loss,
                       margin_mean=(margin * valid).sum() / denom,
                       teacher_cos=c_raw.sum() / denom,
                       accuracy=hit.sum().to(dtype) / denom)
            if not self.from_file:
                out['num_centers'] = (self.center_counts > 0).sum().to(dtype)
        return out

    def extra_repr(self) -> str:
        src = (f'prototype_file={self.prototype_file!r}' if self.from_file
               else 'running centers')
        return (f'{src}, num_classes={self.num_classes}, scale={self.scale}, '
                f'm_min={self.m_min}, m_max={self.m_max}, '
                f'grad_mode={self.grad_mode!r}, gather={self.gather}, '
                f'loss_weight={self.loss_weight}')

"""AdaDistill (Boutros, Štruc & Damer, ECCV 2024): the student's margin
softmax against class centres that follow the teacher's embeddings."""
from typing import Dict, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from mmfacekd.registry import MODELS

from ..heads.margin_head import combined_margin_cosine
from ..utils import gather_no_grad, get_world_size
from .margin_distillation import load_class_centers
from .utils import BatchLoss, check_center_inputs, prepare_embedding_pair

__all__ = ['AdaDistillLoss', 'adaptive_alpha', 'ema_center_update']


def adaptive_alpha(cos_st: Tensor, cos_wt: Tensor,
                   hard_samples: bool = True) -> Tensor:
    r"""The adaptive EMA weight of the old class centre, per sample.

    .. math::
        \alpha'_i = \lfloor \cos(f^s_i, f^t_i) \cdot
                    \cos(w^{(k-1)}_{y_i}, f^t_i) \rceil_0^1
        \quad\text{or, without hard samples,}\quad
        \alpha_i = \lfloor \cos(f^s_i, f^t_i) \rceil_0^1

    (:math:`\lfloor\cdot\rceil_0^1`: clamp to [0, 1]). A student that
    mimics its teacher (large :math:`\cos(f^s, f^t)`) keeps the centre; a
    hard sample (teacher feature far from its centre) moves it more.

    Args:
        cos_st (Tensor): (N, ) :math:`\cos(f^s_i, f^t_i)`.
        cos_wt (Tensor): (N, ) :math:`\cos(w_{y_i}, f^t_i)` (0 for a class
            without a centre yet).
        hard_samples (bool): :math:`\alpha'` (True) or :math:`\alpha`.
            Defaults to True.

    Returns:
        Tensor: (N, ) weights in [0, 1].
    """
    raw = cos_st * cos_wt if hard_samples else cos_st
    return raw.clamp(0.0, 1.0)


def ema_center_update(centers: Tensor, t_hat: Tensor, labels: Tensor,
                      alpha: Tensor) -> Tuple[Tensor, Tensor]:
    r"""New centres of the classes of a batch (duplicate labels averaged).

    Each sample makes one EMA step from the centre of its class; the new
    centre of class :math:`c` is the mean of the steps of the batch's
    samples :math:`I_c` of that class (a scatter-mean, not last-write-wins):

    .. math::
        w^{(k)}_c = \frac{1}{|I_c|} \sum_{i \in I_c}
                    \left[\alpha_i\, w^{(k-1)}_c
                          + (1 - \alpha_i)\, \hat{f}^t_i\right]

    Args:
        centers (Tensor): (C, D) centres :math:`w^{(k-1)}` (not changed).
        t_hat (Tensor): (N, D) L2-normalized teacher embeddings.
        labels (Tensor): (N, ) class indices in [0, C).
        alpha (Tensor): (N, ) EMA weights (:func:`adaptive_alpha`).

    Returns:
        tuple[Tensor, Tensor]: the sorted distinct classes (U, ) and their
        new centres (U, D).
    """
    classes, inverse = torch.unique(labels, sorted=True, return_inverse=True)
    a = alpha.to(centers.dtype).unsqueeze(1)
    steps = a * centers[labels] + (1 - a) * t_hat.to(centers.dtype)
    sums = centers.new_zeros(classes.numel(), centers.size(1))
    sums.index_add_(0, inverse, steps)
    counts = torch.bincount(inverse, minlength=classes.numel())
    return classes, sums / counts.to(centers.dtype).unsqueeze(1)


@MODELS.register_module()
class AdaDistillLoss(BatchLoss):
    r"""AdaDistill of `AdaDistill: Adaptive Knowledge Distillation for Deep
    Face Recognition <https://arxiv.org/abs/2407.01332>`_ (Boutros, Štruc
    & Damer, ECCV 2024, §3).

    No separate distillation term: the student is trained by a margin
    softmax (ArcFace/CosFace, the combined margin of
    :func:`combined_margin_cosine`) whose class centres :math:`w` are not
    learned but follow the teacher's embeddings by an EMA whose weight is
    set by the student's progress (:func:`adaptive_alpha`,
    :func:`ema_center_update`). Per training step :math:`k`, for the
    global batch:

    .. math::
        \alpha'_i = \lfloor \cos(f^s_i, f^t_i)
                    \cos(w^{(k-1)}_{y_i}, f^t_i) \rceil_0^1, \qquad
        w^{(k)}_c = \operatorname{mean}_{i: y_i = c}
                    \left[\alpha'_i w^{(k-1)}_c
                          + (1 - \alpha'_i) \hat{f}^t_i\right]

    .. math::
        \cos\theta_{i,c} = \langle \hat{f}^s_i, \hat{w}^{(k)}_c \rangle,
        \qquad
        \mathcal{L} = -\frac{\lambda}{B} \sum_i \log
        \frac{e^{s(\cos(m_1\theta_{i,y_i} + m_2) - m_3)}}
        {e^{s(\cos(m_1\theta_{i,y_i} + m_2) - m_3)}
         + \sum_{c \neq y_i} e^{s \cos\theta_{i,c}}}

    Symbols: :math:`f^s_i, f^t_i` student / teacher embeddings of sample
    :math:`i` (hats: L2-normalized), :math:`y_i` its label,
    :math:`w_c` the centre of class :math:`c` (:math:`\hat{w}_c`
    normalized), :math:`s` the scale, :math:`(m_1, m_2, m_3)` the margins
    (ArcFace: ``m2``; CosFace: ``m3``), :math:`\lambda` ``loss_weight``.
    Early in training :math:`\alpha' \approx 0` and a centre is the current
    sample's teacher feature (sample-to-sample knowledge); as the student
    learns to mimic the teacher :math:`\alpha' \to \cos(w, f^t)` and the
    centres settle (sample-to-centre knowledge). The paper's defaults:
    ArcFace :math:`m = 0.45` (AdaArcDistill), CosFace :math:`m = 0.35`
    (AdaCosDistill), :math:`s = 64`. The method text was read through a
    paper summary, so the paper's equation numbers are not cited here.

    What is implemented where the paper leaves a choice, or where the
    public code (not used here) is wrong:

    * **Order.** :math:`\alpha'` uses the centre before the step,
      :math:`w^{(k-1)}`, and the current (detached) student embedding; the
      softmax then uses the updated centres :math:`w^{(k)}` (the paper's
      :math:`w^{(k)}` is computed from :math:`f^{t(k)}`).
    * **Normalization.** Teacher embeddings enter the EMA L2-normalized
      (the softmax is on cosines; the raw norm carries image quality, not
      identity); the centres are the plain EMA of those unit vectors
      (not re-normalized), normalized where a cosine is taken.
    * **Initialization.** Zeros (``init_centers=None``): a class without a
      centre has :math:`\cos(w, f^t) := 0`, so :math:`\alpha' = 0` and its
      first batch sets its centre to the mean normalized teacher embedding
      of its samples; until then its cosine in the softmax is 0. The
      paper's AdaDistill needs only the teacher backbone (its ArcDistill /
      CosDistill baselines use the teacher's fixed classifier instead).
      ``init_centers`` starts from a (C, D) file instead: a prototype head
      of ``tools/misc/build_prototype_head.py`` (key ``weight``) or a
      teacher checkpoint's classifier (``head.weight``).
    * **Duplicate labels** in a batch: the scatter-mean above (the public
      code keeps the last write).
    * **Distributed.** The update reads the batch gathered over all ranks
      (rank order); the new rows are broadcast from rank 0, so the copies
      of every rank stay bit-identical even where ``index_add_`` is not
      deterministic (the public code updates each rank's copy from its
      local batch, so the copies drift). The cross-entropy is per rank on
      its local samples (DDP averages the gradients).
    * **Centres are buffers** (persistent: saved in checkpoints, restored
      by ``--resume``), never parameters: no gradient, no optimizer.
    * **Use.** It replaces the student's own classifier: configure the
      student with ``head=None`` (:class:`FaceDistiller` then computes no
      C-way head of its own). Labels ``< 0`` are ignored.

    Logged (``distill.<name>.<stat>``): ``alpha_mean`` (mean
    :math:`\alpha'` of the global batch), ``alpha_clamped`` (fraction whose
    product was negative and clamped to 0), ``center_drift`` (mean
    :math:`\lVert w^{(k)}_c - w^{(k-1)}_c \rVert` over the batch's
    classes), ``student_teacher_cos``, ``center_teacher_cos`` (mean
    :math:`\cos(w^{(k-1)}_{y_i}, f^t_i)`), ``num_centers`` (classes with a
    centre) and ``accuracy`` (student top-1 over the centres).

    Args:
        num_classes (int): C.
        embed_dim (int): D, the width of both embeddings.
        s (float): Scale. Defaults to 64.0.
        m1 (float): Multiplicative angular margin. Defaults to 1.0.
        m2 (float): Additive angular margin (ArcFace). Defaults to 0.45.
        m3 (float): Additive cosine margin (CosFace). Defaults to 0.0.
        grad_mode (str): See :func:`combined_margin_cosine`.
            Defaults to 'straight_through'.
        hard_samples (bool): :math:`\alpha'` (True) or the paper's ablation
            :math:`\alpha = \lfloor\cos(f^s, f^t)\rceil_0^1`.
            Defaults to True.
        init_centers (str, optional): (C, D) centres to start from (see
            above). Defaults to None (zeros).
        init_key (str, optional): Their state-dict key; None tries
            ``weight`` then ``head.weight``. Defaults to None.
        loss_weight (float): :math:`\lambda`. Defaults to 1.0.

    Example:
        >>> loss = AdaDistillLoss(num_classes=10, embed_dim=8)
        >>> out = loss(torch.randn(4, 8), torch.randn(4, 8),
        ...            torch.tensor([0, 1, 1, 3]))
        >>> sorted(out)[:3]
        ['accuracy', 'alpha_clamped', 'alpha_mean']
    """

    def __init__(self,
                 num_classes: int,
                 embed_dim: int,
                 s: float = 64.0,
                 m1: float = 1.0,
                 m2: float = 0.45,
                 m3: float = 0.0,
                 grad_mode: str = 'straight_through',
                 hard_samples: bool = True,
                 init_centers: Optional[str] = None,
                 init_key: Optional[str] = None,
                 loss_weight: float = 1.0) -> None:
        super().__init__(gather=True, loss_weight=loss_weight)
        if not num_classes or not embed_dim:
            raise ValueError(
                'AdaDistillLoss needs num_classes and embed_dim (the '
                'identities of the training set and the embedding width), '
                f'got {num_classes} and {embed_dim}')
        if grad_mode not in ('straight_through', 'exact'):
            raise ValueError("grad_mode must be 'straight_through' or "
                             f"'exact', got {grad_mode!r}")
        if init_centers is not None:
            centers = load_class_centers(init_centers, init_key)
            if tuple(centers.shape) != (num_classes, embed_dim):
                raise ValueError(
                    f'{init_centers}: centres of shape '
                    f'{tuple(centers.shape)}, the config says num_classes='
                    f'{num_classes}, embed_dim={embed_dim}; fix one of them')
        else:
            centers = torch.zeros(num_classes, embed_dim)
        self.register_buffer('centers', centers)
        self.init_centers = init_centers
        self.s, self.m1, self.m2, self.m3 = float(s), m1, m2, m3
        self.grad_mode = grad_mode
        self.hard_samples = bool(hard_samples)

    @torch.no_grad()
    def update_centers(self, s_hat: Tensor, t_hat: Tensor,
                       labels: Tensor) -> Dict[str, Tensor]:
        """One EMA step of the centres from the global batch; returns the
        logged statistics.

        Args:
            s_hat, t_hat (Tensor): (B, D) normalized local student / teacher
                embeddings.
            labels (Tensor): (B, ) local labels (``< 0`` ignored).
        """
        cos_st = (s_hat * t_hat).sum(dim=1)
        t_hat = gather_no_grad(t_hat)
        cos_st = gather_no_grad(cos_st)
        labels = gather_no_grad(labels)
        keep = labels >= 0
        t_hat, cos_st, labels = t_hat[keep], cos_st[keep], labels[keep]
        zero = self.centers.new_zeros(())
        if not labels.numel():  # same on every rank: the batch is global
            return dict(alpha_mean=zero, alpha_clamped=zero,
                        center_drift=zero, student_teacher_cos=zero,
                        center_teacher_cos=zero)
        t_hat = t_hat.to(self.centers.dtype)
        cos_st = cos_st.to(self.centers.dtype)
        old = self.centers[labels]
        cos_wt = (F.normalize(old, dim=1) * t_hat).sum(dim=1)
        alpha = adaptive_alpha(cos_st, cos_wt, self.hard_samples)
        raw = cos_st * cos_wt if self.hard_samples else cos_st
        classes, rows = ema_center_update(self.centers, t_hat, labels, alpha)
        if get_world_size() > 1:
            dist.broadcast(rows, src=0)
        drift = (rows - self.centers[classes]).norm(dim=1)
        self.centers.index_copy_(0, classes, rows)
        n = float(labels.numel())
        return dict(alpha_mean=alpha.mean(),
                    alpha_clamped=(raw < 0).sum().to(zero.dtype) / n,
                    center_drift=drift.mean(),
                    student_teacher_cos=cos_st.mean(),
                    center_teacher_cos=cos_wt.mean())

    def forward(self, student_embedding: Tensor, teacher_embedding: Tensor,
                gt_label: Tensor) -> Dict[str, Tensor]:
        """Update the centres (training mode) and classify the student.

        Args:
            student_embedding (Tensor): (B, D) student embeddings.
            teacher_embedding (Tensor): (B, D) teacher embeddings (e.g. from
                the teacher cache).
            gt_label (Tensor): (B, ) identity labels.

        Returns:
            dict: ``loss`` and the statistics listed in the class docstring.
        """
        s_hat, t_hat = prepare_embedding_pair(
            student_embedding, teacher_embedding, normalize=True,
            flatten=False)
        labels = gt_label.reshape(-1).long()
        check_center_inputs('AdaDistillLoss', s_hat, t_hat, labels,
                            *self.centers.shape)
        stats = (self.update_centers(s_hat.detach(), t_hat, labels)
                 if self.training else {})
        norms = self.centers.norm(dim=1, keepdim=True)
        w_hat = (self.centers / norms.clamp(min=1e-12)).to(s_hat.dtype)
        cos = s_hat @ w_hat.t()
        target = torch.where(labels >= 0, labels, torch.full_like(labels, -1))
        logits = self.s * combined_margin_cosine(
            cos, target, self.m1, self.m2, self.m3, self.grad_mode)
        valid = target >= 0
        n_valid = valid.sum().clamp(min=1)
        ce = F.cross_entropy(logits, target, ignore_index=-1, reduction='sum')
        out = dict(loss=self.loss_weight * ce / n_valid)
        with torch.no_grad():
            hit = (cos.argmax(dim=1) == target) & valid
            out['accuracy'] = hit.sum().to(cos.dtype) / n_valid
            out['num_centers'] = (norms > 0).sum().to(cos.dtype)
        out.update(stats)
        return out

    def extra_repr(self) -> str:
        return (f'num_classes={self.centers.size(0)}, '
                f'embed_dim={self.centers.size(1)}, s={self.s}, '
                f'm=({self.m1}, {self.m2}, {self.m3}), '
                f'grad_mode={self.grad_mode!r}, '
                f'hard_samples={self.hard_samples}, '
                f'init_centers={self.init_centers!r}, '
                f'loss_weight={self.loss_weight}')

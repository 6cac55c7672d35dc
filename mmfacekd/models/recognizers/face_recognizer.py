"""FaceRecognizer: backbone (+ neck) → embedding → margin head."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModel

from mmfacekd.registry import MODELS

from ..data_preprocessors import build_face_data_preprocessor
from ..heads.margin_head import stack_gt_labels
from ..heads.partial_fc_head import PartialFCHead
from ..utils import gather_no_grad


def cls_loss_flags(data_samples: Sequence, device: torch.device
                   ) -> torch.Tensor:
    """(N,) bool: each data sample's ``with_cls_loss`` metainfo flag (set
    by :class:`IdentityBalancedSampler` with ``cls_loss_on='random_part'``
    and packed by :class:`PackFaceInputs`); True without the flag."""
    return torch.tensor(
        [bool(ds.get('with_cls_loss', True)) for ds in data_samples],
        dtype=torch.bool, device=device)


def cls_loss_mask(data_samples: Sequence, device: torch.device
                  ) -> Optional[torch.Tensor]:
    """(N,) bool mask of the samples that get the classification loss.

    :func:`cls_loss_flags`, or None when every sample gets the loss
    (nothing to select).
    """
    flags = cls_loss_flags(data_samples, device)
    return None if bool(flags.all()) else flags


@MODELS.register_module()
class FaceRecognizer(BaseModel):
    """A face recognizer: ``data_preprocessor → backbone → [neck] → head``.

    Modes of :meth:`forward`:
      * ``'loss'`` — margin-softmax loss of the head (``loss_cls``) and the
        top-1 training accuracy, over the samples whose ``with_cls_loss``
        flag is True (all samples without the flag), see
        :meth:`loss_by_embedding`;
      * ``'predict'`` — embeddings (image + horizontal flip summed when
        ``test_cfg.flip`` is True, the verification protocol) written to each
        data sample as ``pred_embedding`` together with ``xnorm`` (mean
        un-normalized embedding norm of the image and its flip);
      * ``'tensor'`` — the raw (N, D) embedding of the inputs.

    Teachers and students of a distiller are both FaceRecognizers.

    Args:
        backbone (dict): Backbone config (``IResNet``, ``MobileFaceNet`` or
            any mmpretrain backbone via ``type='mmpretrain.X'``).
        neck (dict, optional): E.g. ``EmbeddingNeck`` for generic backbones.
        head (dict, optional): A :class:`MarginHead` config; may be None for
            evaluation-only models (a released ``backbone.pth``).
        data_preprocessor (dict, optional): Defaults to
            ``FaceDataPreprocessor`` (mean 127.5, std 128).
        test_cfg (dict, optional): ``flip`` (bool). Defaults to
            ``dict(flip=True)``.
        init_cfg (dict, optional): MMEngine init config.
    """

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            data_preprocessor=build_face_data_preprocessor(data_preprocessor),
            init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        self.head = MODELS.build(head) if head is not None else None
        self.test_cfg = dict(flip=True)
        self.test_cfg.update(test_cfg or {})

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """Return the (N, D) un-normalized embedding."""
        x = self.backbone(inputs)
        if self.neck is not None:
            x = self.neck(x)
        elif isinstance(x, (tuple, list)):
            raise TypeError(
                f'{type(self.backbone).__name__} returns a tuple of feature '
                'maps; add `neck=dict(type="EmbeddingNeck", ...)` to turn it '
                'into an embedding.')
        return x

    def forward(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None,
                mode: str = 'tensor') -> Union[Dict, List, torch.Tensor]:
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.extract_feat(inputs)
        raise RuntimeError(
            f'Invalid mode "{mode}"; use loss, predict or tensor.')

    def _require_head(self, what: str) -> None:
        if self.head is None:
            raise RuntimeError(f'FaceRecognizer without a head cannot compute '
                               f'{what}; add `head=dict(...)`.')

    def get_logits(self, embedding: torch.Tensor,
                   gt_label: Optional[torch.Tensor] = None,
                   **head_kwargs) -> Dict[str, torch.Tensor]:
        """The head's ``logits`` (s·cos θ) and, with labels, ``margin_logits``
        for every sample of ``embedding`` (``head_kwargs``: e.g. the
        ``class_index`` of a :class:`PartialFCHead`)."""
        self._require_head('logits')
        return self.head.get_logits(embedding, gt_label, **head_kwargs)

    def loss_by_embedding(self, embedding: torch.Tensor, data_samples: List
                          ) -> Tuple[Dict[str, torch.Tensor],
                                     Dict[str, torch.Tensor]]:
        """Classification loss of ``embedding`` and the logits it came from.

        The one place where a recognizer's own loss is computed: used by
        :meth:`loss` and by :class:`FaceDistiller` for its student. The
        logits cover the whole batch; the loss (``loss_cls``, ``accuracy``)
        only the samples flagged ``with_cls_loss`` (see
        :func:`cls_loss_mask`):

        .. math::
            \\mathcal{L}_{cls} = \\frac{1}{|F|} \\sum_{i \\in F}
            \\mathrm{CE}(s \\cdot \\cos\\theta'_i, y_i)

        with F the flagged samples; ``loss_cls`` is 0 (with a graph) when a
        batch has none.

        Args:
            embedding (Tensor): (N, D) un-normalized embeddings.
            data_samples (list): N data samples with ``gt_label``.

        Returns:
            tuple(dict, dict): ``(losses, logits)`` with
            ``losses = dict(loss_cls, accuracy)`` and
            ``logits = dict(logits, margin_logits)``, each (N, C).
        """
        self._require_head('a training loss')
        gt = stack_gt_labels(data_samples, embedding.device)
        logits = self.head.get_logits(embedding, gt)
        if isinstance(self.head, PartialFCHead):
            return self._sharded_loss(logits, gt, data_samples), logits
        mask = cls_loss_mask(data_samples, embedding.device)
        if mask is None:
            return self.head.loss_by_logits(logits, gt), logits
        if not mask.any():
            zero = logits['margin_logits'].sum() * 0
            return dict(loss_cls=zero, accuracy=zero.detach()), logits
        losses = self.head.loss_by_logits(
            {k: v[mask] for k, v in logits.items()}, gt[mask])
        return losses, logits

    def _sharded_loss(self, logits: Dict[str, torch.Tensor],
                      gt: torch.Tensor,
                      data_samples: List) -> Dict[str, torch.Tensor]:
        """:class:`PartialFCHead`'s loss over the flagged samples: its rows
        are the global batch, so the flags of every rank are gathered (on
        every step: a rank whose samples are all flagged still joins) and
        an unflagged row gets the ignored column label -1."""
        flags = cls_loss_flags(data_samples, gt.device)
        flags = gather_no_grad(flags.to(torch.uint8)).bool()
        column = logits['column_label']
        column = torch.where(flags, column, torch.full_like(column, -1))
        return self.head.loss_by_logits(dict(logits, column_label=column),
                                        gt)

    def loss(self, inputs: torch.Tensor,
             data_samples: List) -> Dict[str, torch.Tensor]:
        return self.loss_by_embedding(self.extract_feat(inputs),
                                      data_samples)[0]

    def embed(self, inputs: torch.Tensor):
        """Return ``(embedding, xnorm)`` following the verification protocol.

        With ``test_cfg.flip`` the embedding is ``f(x) + f(flip(x))`` and
        ``xnorm`` the mean of ``‖f(x)‖`` and ``‖f(flip(x))‖`` per sample.
        """
        feats = self.extract_feat(inputs)
        norms = [feats.norm(dim=1)]
        if self.test_cfg.get('flip', True):
            flipped = self.extract_feat(inputs.flip(-1))
            norms.append(flipped.norm(dim=1))
            feats = feats + flipped
        return feats, torch.stack(norms).mean(0)

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None) -> List:
        feats, xnorm = self.embed(inputs)
        if data_samples is None:
            from mmengine.structures import BaseDataElement
            data_samples = [BaseDataElement() for _ in range(feats.shape[0])]
        for ds, f, n in zip(data_samples, feats, xnorm):
            ds.set_field(f.float().cpu(), 'pred_embedding', field_type='data')
            ds.set_field(n.float().cpu(), 'xnorm', field_type='data')
        return data_samples

"""FaceRecognizer: backbone (+ neck) → embedding → margin head."""
from typing import Dict, List, Optional, Union

import torch
from mmengine.model import BaseModel

from mmfacekd.registry import MODELS
from ..data_preprocessors import build_face_data_preprocessor


@MODELS.register_module()
class FaceRecognizer(BaseModel):
    """A face recognizer: ``data_preprocessor → backbone → [neck] → head``.

    Modes of :meth:`forward`:
      * ``'loss'`` — margin-softmax loss of the head (``loss_cls``) and the
        top-1 training accuracy;
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
        raise RuntimeError(f'Invalid mode "{mode}"; use loss, predict or tensor.')

    def loss(self, inputs: torch.Tensor,
             data_samples: List) -> Dict[str, torch.Tensor]:
        if self.head is None:
            raise RuntimeError('FaceRecognizer without a head cannot compute '
                               'a training loss; add `head=dict(...)`.')
        return self.head.loss(self.extract_feat(inputs), data_samples)

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

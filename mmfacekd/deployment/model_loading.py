"""Build the embedding network of a config and load a checkpoint into it.

A recognizer config gives its FaceRecognizer; a FaceDistiller config gives
its student (``model.student``, normalized by the distiller's
``data_preprocessor``), and a distiller checkpoint gives the ``student.*``
weights (the names :class:`FaceDistiller` saves and
``tools/misc/extract_student.py`` strips). The classification head is not
built: only backbone + neck make the embedding.
"""
import copy
import os.path as osp
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config

from mmfacekd.registry import MODELS
from mmfacekd.utils.checkpoint_safety import load_checkpoint_safely


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's keys/shapes do not fit the config's model."""


def recognizer_config(cfg: Config, role: str = 'student',
                      keep_head: bool = False) -> Tuple[dict, dict]:
    """``(FaceRecognizer config, data_preprocessor config)``, the head
    dropped unless ``keep_head``.

    For a FaceDistiller, ``role`` picks the student (default) or the
    teacher, with the distiller's data preprocessor (the one both run
    behind).
    """
    if role not in ('student', 'teacher'):
        raise ValueError(f"role must be 'student' or 'teacher', got {role!r}")
    model = copy.deepcopy(cfg.model)
    if model.get('type') == 'FaceDistiller':
        net = model[role]
        pre = model.get('data_preprocessor') or net.get(
            'data_preprocessor') or {}
        model = net
    else:
        pre = model.get('data_preprocessor') or {}
    model = dict(model)
    if not keep_head:
        model['head'] = None
    model['data_preprocessor'] = dict(pre)
    backbone = dict(model['backbone'])
    if backbone.get('fp16'):
        backbone['fp16'] = False  # autocast would change the exported graph
    model['backbone'] = backbone
    return model, dict(pre)


def embedding_state_dict(ckpt: Union[str, dict],
                         source: str = '<checkpoint>'
                         ) -> Dict[str, torch.Tensor]:
    """Backbone/neck weights of a recognizer or distiller checkpoint."""
    if isinstance(ckpt, str):
        source = ckpt
        if not osp.isfile(ckpt):
            raise FileNotFoundError(f'checkpoint {ckpt} not found')
        ckpt = load_checkpoint_safely(ckpt)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise CheckpointMismatchError(
            f'{source} holds a {type(state).__name__}, not a state dict.')
    state = {k[len('module.'):] if k.startswith('module.') else k: v
             for k, v in state.items()}
    if any(k.startswith('student.') for k in state):
        state = {k[len('student.'):]: v for k, v in state.items()
                 if k.startswith('student.')}
    return {k: v for k, v in state.items()
            if k.startswith(('backbone.', 'neck.'))}


def load_embedding_weights(model: nn.Module, state: Dict[str, torch.Tensor],
                           source: str, config: str = '<config>') -> None:
    """Load ``state`` into ``model`` (backbone + neck) strictly, with one
    error naming the checkpoint, the config and what differs."""
    own = {k: v for k, v in model.state_dict().items()
           if k.startswith(('backbone.', 'neck.'))}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs model '
              f'{tuple(own[k].shape)}' for k in sorted(set(own) & set(state))
              if tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f'Checkpoint {source} does not fit the model of {config} '
            f'(backbone {type(model.backbone).__name__}): it was trained '
            'with another architecture.\n'
            f'  missing keys ({len(missing)}): {missing[:5]}\n'
            f'  unexpected keys ({len(unexpected)}): {unexpected[:5]}\n'
            f'  shape mismatches ({len(shapes)}): {shapes[:5]}\n'
            'Pass the config the checkpoint was trained with (for an '
            'insightface backbone.pth, convert it first with '
            'tools/misc/convert_insightface.py).')
    model.load_state_dict(state, strict=False)


def build_embedding_model(cfg: Union[str, Config],
                          checkpoint: Optional[Union[str, dict]] = None
                          ) -> Tuple[nn.Module, dict]:
    """The eval-mode FaceRecognizer (no head) of ``cfg`` with ``checkpoint``
    loaded, and its data preprocessor config."""
    config_name = cfg if isinstance(cfg, str) else (cfg.filename or
                                                    '<config>')
    if isinstance(cfg, str):
        cfg = Config.fromfile(cfg)
    model_cfg, pre = recognizer_config(cfg)
    model = MODELS.build(model_cfg)
    if checkpoint is not None:
        source = checkpoint if isinstance(checkpoint, str) else '<state>'
        load_embedding_weights(model, embedding_state_dict(checkpoint),
                               source, config_name)
    return model.eval(), pre

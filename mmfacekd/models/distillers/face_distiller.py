"""FaceDistiller: a frozen teacher FaceRecognizer teaches a student by
config."""
import inspect
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.model import BaseModel

from mmfacekd.registry import MODELS
from mmfacekd.utils.checkpoint_safety import load_checkpoint_safely

from ..data_preprocessors import build_face_data_preprocessor
from ..heads.margin_head import stack_gt_labels
from ..heads.partial_fc_head import PartialFCHead
from .recorder import build_recorders
from .teacher_cache import (
    TeacherCacheError,
    TeacherEmbeddingCache,
    preprocessing_fingerprint,
    teacher_fingerprint,
)

NETWORK_OUTPUTS = ('embedding', 'logits', 'margin_logits')


def revise_state_dict(state: dict, revise_keys: Sequence[Tuple[str, str]]
                      ) -> Dict[str, torch.Tensor]:
    """Rewrite checkpoint keys by ``(regex, replacement)`` pairs, in order."""
    revised = {}
    for k, v in state.items():
        for pattern, repl in revise_keys:
            k = re.sub(pattern, repl, k)
        revised[k] = v
    return revised


def load_state_dict_strict(module: nn.Module, state: Dict[str, torch.Tensor],
                           source: str,
                           exclude_prefixes: Sequence[str] = ()) -> None:
    """Load ``state`` into ``module``; any missing/unexpected key is an error.

    Keys of ``module`` starting with one of ``exclude_prefixes`` are not
    required (e.g. a head that is loaded from elsewhere).
    """
    own = module.state_dict()
    expected = {k for k in own if not k.startswith(tuple(exclude_prefixes))}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise RuntimeError(
            f'Checkpoint {source} does not match the teacher model (strict '
            f'load).\n  missing keys ({len(missing)}): {missing[:10]}'
            f'\n  unexpected keys ({len(unexpected)}): {unexpected[:10]}\n'
            'Fix the teacher config, or map foreign key names with '
            "`teacher_revise_keys` (e.g. [(r'^', 'backbone.')] for an "
            'insightface backbone.pth, with `teacher.head=None` or '
            '`teacher_head_ckpt`).')
    # optional keys (excluded prefixes) are loaded too when present
    module.load_state_dict({k: v for k, v in state.items() if k in own},
                           strict=False)


def load_teacher_weights(teacher: nn.Module, ckpt_path: str,
                         revise_keys: Sequence[Tuple[str, str]] = (
                             (r'^module\.', ''), ),
                         exclude_prefixes: Sequence[str] = ()) -> None:
    """Load ``ckpt_path`` into ``teacher`` strictly (``weights_only`` load).

    ``revise_keys`` rewrites key names first; e.g. ``[(r'^', 'backbone.')]``
    maps a raw insightface ``backbone.pth`` onto a FaceRecognizer.
    """
    ckpt = load_checkpoint_safely(ckpt_path)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    load_state_dict_strict(teacher, revise_state_dict(state, revise_keys),
                           ckpt_path, exclude_prefixes)


@MODELS.register_module()
class FaceDistiller(BaseModel):
    """Distill a frozen teacher :class:`FaceRecognizer` into a student.

    Everything is configuration: which recorded tensors exist, which
    trainable connectors transform them, which loss reads which tensors.

    Named inputs a loss can read (``inputs=dict(<forward arg>=<name>)``):
      * ``student.embedding``, ``student.logits`` (s·cos θ),
        ``student.margin_logits`` (margin applied to the target),
        ``teacher.embedding``, ``teacher.logits``, ``teacher.margin_logits``
        (teacher logits need a teacher head: its own or a prototype head);
      * ``teacher.prompted_embedding`` — a prompted (APT) teacher's
        embedding of the prompted pass, with autograd into the prompts;
      * ``gt_label``;
      * ``recorder.<name>`` — output of a module of either network;
      * ``connector.<name>`` — output of a trainable connector.
    Inputs are checked against each loss's ``forward`` signature when the
    model is built.

    The teacher is loaded strictly from ``teacher_ckpt``, frozen
    (``requires_grad_(False)``), kept in eval mode, run under ``no_grad``
    and left out of the distiller's ``state_dict`` unless ``save_teacher``
    — except the parameters named by ``teacher_trainable``.

    Prompted teachers (APT: a backbone with ``prompts_enabled`` and
    ``without_prompts()``, e.g. :class:`FaceViT` or
    :class:`PromptedSwinTransformer` with ``prompt_cfg``): recorders see the
    prompted forward (with autograd, so the distillation losses train the
    prompts), while ``teacher.embedding``/``teacher.logits``/
    ``teacher.margin_logits`` and ``predict_teacher`` come from a separate
    forward *without* prompts under ``no_grad`` — the teacher's own identity
    prediction stays exactly the pretrained one (CAKD project decision, see
    docs/papers.md §2). That second forward runs only when a loss or connector
    reads those outputs. ``prompted_teacher_cls_weight > 0`` anchors the
    prompts to identity: the prompted embedding goes through the teacher's
    frozen classifier (its own head or a prototype head) with its margin
    softmax loss, logged as ``teacher.loss_cls_prompted`` (and
    ``teacher.accuracy_prompted``), so the prompts cannot trade the teacher's
    discriminative power for an easier alignment (issue 15; the CAKD paper
    says APT keeps the teacher's capacity but publishes no such term).

    Loss keys: ``student.loss_cls`` (+ ``student.accuracy``),
    ``distill.loss_<name>`` and, for losses returning a dict,
    ``distill.<name>.<stat>`` for each logged statistic.

    Contracts:
      * The student's own loss is :meth:`FaceRecognizer.loss_by_embedding`
        (the one used by ``FaceRecognizer.loss``): its classification loss
        covers the samples whose ``with_cls_loss`` flag is True
        (:class:`IdentityBalancedSampler` with ``cls_loss_on='random_part'``
        flags the random part, EKD); distillation losses and
        ``student.logits`` cover the whole batch.
      * A student without a head (``student.head=None``) has no loss of
        its own and no ``student.logits``/``student.margin_logits``: a
        distillation loss that classifies against its own class centres
        replaces it (AdaDistill), and no unused C-way head is computed.
      * Recorders record only inside :meth:`loss` (``with self.recorders``:
        hooks registered on enter, removed and records dropped on exit);
        ``predict``/``tensor`` modes run without hooks.
      * ``predict`` adds ``teacher_embedding``/``teacher_xnorm`` to the data
        samples while :attr:`predict_teacher` is True — set by
        :class:`TeacherEvalHook` around the first validation
        (``custom_hooks=[dict(type='TeacherEvalHook')]``).

    Args:
        student (dict): FaceRecognizer config of the student.
        teacher (dict): FaceRecognizer config of the teacher.
        teacher_ckpt (str, optional): Teacher weights (our checkpoint or a
            foreign one with ``teacher_revise_keys``). None leaves the teacher
            randomly initialized (tests only; a warning is logged).
        teacher_revise_keys (list): ``(regex, replacement)`` pairs applied to
            checkpoint keys. Defaults to ``[(r'^module\\.', '')]``.
        teacher_head_ckpt (str, optional): Checkpoint of the teacher head
            alone (``tools/misc/build_prototype_head.py``), for teachers
            released without a classifier.
        distill_losses (dict): ``{name: dict(type=..., inputs=dict(...),
            **loss_kwargs)}``.
        recorders (dict): ``{name: dict(source='student.backbone.layer3')}``.
        connectors (dict): ``{name: dict(type=..., input=<named input>,
            **kwargs)}`` — trainable modules owned by the distiller.
        student_loss_weight (float): Weight of the student's own loss. 0
            with no loss reading ``student.logits``/``margin_logits``
            (MarginDistillation) skips the student head: it is not run, its
            parameters are frozen (no unused C-way classifier, nothing
            unused under DDP). Defaults to 1.0.
        teacher_trainable (Sequence[str]): Prefixes of teacher parameters
            that train with the student, e.g. ``['backbone.prompts']`` for
            APT prompts (CAKD). They need not be in ``teacher_ckpt``, are
            handed to the optimizer, and are saved in (and resumed from) the
            distiller's checkpoints; the rest of the teacher stays frozen
            and in eval mode. When trainable teacher parameters exist the
            teacher runs with autograd on. Defaults to ().
        student_cls_samples (int, optional): **Removed** — any value is an
            error naming its replacement, ``cls_loss_on='random_part'`` on
            ``IdentityBalancedSampler`` (which flags each sample
            ``with_cls_loss``). Defaults to None.
        prompted_teacher_cls_weight (float): Weight of the identity anchor of
            a prompted teacher (see above); needs ``prompt_cfg`` on the
            teacher backbone and a teacher head. Defaults to 0 (off).
        save_teacher (bool): Keep teacher weights in checkpoints.
            Defaults to False.
        eval_teacher (bool): **Removed** — True is an error that names its
            replacement, ``custom_hooks=[dict(type='TeacherEvalHook')]``.
            Defaults to False.
        teacher_cache (str, optional): A teacher-embedding cache
            (``tools/misc/cache_teacher.py``): ``teacher.embedding`` of each
            sample is read from it (the row of its ``sample_idx``, the view
            of its ``flip``) and ``teacher.logits``/``margin_logits`` come
            from the teacher's head; the teacher backbone is neither run nor
            kept. Checked against ``teacher_ckpt`` (SHA-256), the teacher
            config, the preprocessing and, per sample, the record read.
            Refused with teacher recorders, trainable or prompted teachers
            (they need the backbone). Defaults to None.
        data_preprocessor (dict, optional): Defaults to FaceDataPreprocessor.

    Mixed precision (``tools/train.py --amp``): the teacher runs under the
    optimizer wrapper's autocast and ``inference_mode`` (``no_grad`` when
    teacher recorders or trainable teacher parameters need normal
    tensors); every distillation loss gets float32 inputs and runs with
    autocast off.
    """

    def __init__(self,
                 student: dict,
                 teacher: dict,
                 teacher_ckpt: Optional[str] = None,
                 teacher_revise_keys: Sequence = ((r'^module\.', ''), ),
                 teacher_head_ckpt: Optional[str] = None,
                 distill_losses: Optional[dict] = None,
                 recorders: Optional[dict] = None,
                 connectors: Optional[dict] = None,
                 student_loss_weight: float = 1.0,
                 student_cls_samples: Optional[int] = None,
                 teacher_trainable: Sequence[str] = (),
                 prompted_teacher_cls_weight: float = 0.0,
                 save_teacher: bool = False,
                 eval_teacher: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 teacher_cache: Optional[str] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            data_preprocessor=build_face_data_preprocessor(data_preprocessor),
            init_cfg=init_cfg)
        self.student = MODELS.build(student)
        self.teacher = MODELS.build(teacher)
        self.teacher_ckpt = teacher_ckpt
        self.teacher_trainable = tuple(teacher_trainable)
        names = [n for n, _ in self.teacher.named_parameters()]
        for prefix in self.teacher_trainable:
            if not any(n.startswith(prefix) for n in names):
                raise KeyError(
                    f'teacher_trainable prefix {prefix!r} matches no teacher '
                    'parameter; e.g. APT prompts need `prompt_cfg` on the '
                    "teacher backbone and teacher_trainable=['backbone."
                    "prompts'].")
        optional = tuple(self.teacher_trainable)
        if teacher_head_ckpt:
            optional += ('head.', )
        if teacher_ckpt is not None:
            load_teacher_weights(
                self.teacher, teacher_ckpt, teacher_revise_keys,
                exclude_prefixes=optional)
        else:
            MMLogger.get_current_instance().warning(
                'FaceDistiller: no teacher_ckpt given, the teacher is random.')
        if teacher_head_ckpt is not None:
            if self.teacher.head is None:
                raise ValueError('teacher_head_ckpt needs a `head` in the '
                                 'teacher config to load into.')
            load_teacher_weights(self.teacher.head, teacher_head_ckpt, ())
        self.teacher.requires_grad_(False)
        for prefix in self.teacher_trainable:
            params = [p for n, p in self.teacher.named_parameters()
                      if n.startswith(prefix)]
            for p in params:
                p.requires_grad_(True)
        self.teacher.eval()
        self.teacher_cache: Optional[TeacherEmbeddingCache] = None
        if teacher_cache is not None:
            self._use_teacher_cache(teacher_cache, teacher, teacher_ckpt,
                                    teacher_revise_keys, recorders)
        self.save_teacher = save_teacher
        if eval_teacher:
            raise ValueError(
                'FaceDistiller(eval_teacher=True) was replaced by a hook: '
                "remove `model.eval_teacher` and add `custom_hooks=[dict("
                "type='TeacherEvalHook')]` to the config (it evaluates the "
                'teacher in the first validation, as eval_teacher did).')
        # teacher embeddings in predict(); driven by TeacherEvalHook
        self.predict_teacher = False
        self.student_loss_weight = student_loss_weight
        if student_cls_samples is not None:
            raise ValueError(
                'FaceDistiller(student_cls_samples) was replaced by a '
                'per-sample flag: remove `model.student_cls_samples` and set '
                "`cls_loss_on='random_part'` on the IdentityBalancedSampler "
                '(train_dataloader.sampler); each sample then carries '
                '`with_cls_loss` and only flagged samples get the '
                'classification loss.')
        # scale of all distillation terms, driven by DistillWarmupHook
        self.distill_weight_scale = 1.0

        self.recorders = build_recorders(
            dict(student=self.student, teacher=self.teacher), recorders)
        self.connector_inputs: Dict[str, str] = {}
        self.connectors = nn.ModuleDict()
        for name, ccfg in (connectors or {}).items():
            ccfg = dict(ccfg)
            self.connector_inputs[name] = ccfg.pop('input')
            self.connectors[name] = MODELS.build(ccfg)
        self.loss_inputs: Dict[str, Dict[str, str]] = {}
        self.distill_losses = nn.ModuleDict()
        for name, lcfg in (distill_losses or {}).items():
            lcfg = dict(lcfg)
            self.loss_inputs[name] = dict(lcfg.pop('inputs', {}))
            self.distill_losses[name] = MODELS.build(lcfg)
        self.prompted_teacher_cls_weight = float(prompted_teacher_cls_weight)
        self._validate_inputs()
        # weight 0 and no loss reading student.*logits (MarginDistillation):
        # the C-way student head is neither run nor trained
        self.run_student_head = self.student.head is not None and (
            self.student_loss_weight != 0 or bool(
                self._needed() & {'student.logits', 'student.margin_logits'}))
        if self.student.head is not None and not self.run_student_head:
            self.student.head.requires_grad_(False)

        self._register_state_dict_hook(self._drop_teacher_state)
        self.register_load_state_dict_post_hook(self._ignore_missing_teacher)

    # ------------------------------------------------------------------ setup
    def _use_teacher_cache(self, path: str, teacher_cfg: dict,
                           teacher_ckpt: Optional[str], revise_keys: Sequence,
                           recorders: Optional[dict]) -> None:
        """Check a cache can stand in for the teacher backbone; drop it."""
        why = None
        on_teacher = [n for n, r in (recorders or {}).items()
                      if str(r.get('source', '')).startswith('teacher.')]
        if on_teacher:
            why = (f'recorders {on_teacher} read intermediate teacher '
                   'features, which the cache does not hold')
        elif self.teacher_trainable:
            why = (f'teacher_trainable={list(self.teacher_trainable)} trains '
                   'teacher parameters, so its embeddings change')
        elif self._teacher_prompted():
            why = 'the teacher is prompted (APT), its features change'
        if why is not None:
            raise TeacherCacheError(
                f'model.teacher_cache cannot be used here: {why}; remove '
                '`teacher_cache` (the live teacher runs).')
        self.teacher_cache = TeacherEmbeddingCache(
            path,
            teacher=teacher_fingerprint(teacher_cfg, teacher_ckpt,
                                        revise_keys),
            preprocessing=preprocessing_fingerprint(self.data_preprocessor))
        # the cache replaces the backbone: free it
        self.teacher.backbone = _NoBackbone(path)
        self.teacher.neck = None

    def _check_prompted_anchor(self) -> None:
        if not self.prompted_teacher_cls_weight:
            return
        why = None
        if not self._teacher_prompted():
            why = 'the teacher backbone has no prompts (set `prompt_cfg`)'
        elif self.teacher.head is None:
            why = ('the teacher has no head; give it one or a prototype '
                   'head (`teacher_head_ckpt`, '
                   'tools/misc/build_prototype_head.py)')
        elif not any(p.requires_grad for n, p in
                     self.teacher.backbone.named_parameters()
                     if 'prompts' in n):
            why = ("the prompts do not train; add teacher_trainable="
                   "['backbone.prompts']")
        if why:
            raise ValueError(
                'FaceDistiller(prompted_teacher_cls_weight='
                f'{self.prompted_teacher_cls_weight}): {why}.')

    def available_inputs(self) -> List[str]:
        names = [f'student.{o}' for o in NETWORK_OUTPUTS
                 if o == 'embedding' or self.student.head is not None]
        if isinstance(self.student.head, PartialFCHead):
            names.append('student.column_label')
        names += ['teacher.embedding', 'gt_label']
        if self._teacher_prompted():
            names += ['teacher.prompted_embedding']
        if self.teacher.head is not None:
            names += ['teacher.logits', 'teacher.margin_logits']
        names += [f'recorder.{n}' for n in self.recorders]
        names += [f'connector.{n}' for n in self.connector_inputs]
        return names

    def _validate_inputs(self) -> None:
        if self.student.head is None and not self.distill_losses:
            raise ValueError(
                'FaceDistiller: the student has no head (student.head=None) '
                'and there are no distill_losses, so nothing trains it; give '
                'the student a head or add a loss that classifies against '
                "its own class centres (e.g. type='AdaDistillLoss').")
        self._check_prompted_anchor()
        available = self.available_inputs()
        for name, src in self.connector_inputs.items():
            if src not in available or src == f'connector.{name}':
                raise KeyError(f'Connector {name!r} reads unknown input '
                               f'{src!r}; available: {available}')
        for name, mapping in self.loss_inputs.items():
            loss = self.distill_losses[name]
            params = inspect.signature(loss.forward).parameters
            required = [p for p, v in params.items()
                        if v.default is inspect.Parameter.empty
                        and v.kind in (v.POSITIONAL_OR_KEYWORD,
                                       v.KEYWORD_ONLY)]
            for arg, src in mapping.items():
                if arg not in params:
                    raise KeyError(
                        f'Distill loss {name!r} ({type(loss).__name__}): '
                        f'`inputs` names argument {arg!r}, but forward() '
                        f'takes {list(params)}.')
                if src not in available:
                    raise KeyError(
                        f'Distill loss {name!r}: input {arg}={src!r} is not '
                        f'available; available inputs: {available}')
            missing = [p for p in required if p not in mapping]
            if missing:
                raise KeyError(
                    f'Distill loss {name!r} ({type(loss).__name__}): '
                    f'forward() arguments {missing} have no input; set them '
                    f'in `inputs=dict(...)` from: {available}')

    @staticmethod
    def _drop_teacher_state(module, state_dict, prefix, local_metadata):
        if module.save_teacher:
            return state_dict
        # trainable teacher parameters (e.g. APT prompts) are kept
        keep = tuple(prefix + 'teacher.' + p for p in module.teacher_trainable)
        for key in [k for k in state_dict
                    if k.startswith(prefix + 'teacher.')
                    and not k.startswith(keep)]:
            del state_dict[key]
        return state_dict

    @staticmethod
    def _ignore_missing_teacher(module, incompatible_keys) -> None:
        missing = incompatible_keys.missing_keys
        trainable = tuple('teacher.' + p for p in module.teacher_trainable)
        for key in [k for k in missing if k.startswith('teacher.')
                    and not k.startswith(trainable)]:
            missing.remove(key)

    def init_weights(self) -> None:
        """Initialize student and connectors; the teacher keeps its weights."""
        self.student.init_weights()
        for m in self.connectors.values():
            if hasattr(m, 'init_weights'):
                m.init_weights()

    def train(self, mode: bool = True) -> 'FaceDistiller':
        super().train(mode)
        self.teacher.eval()
        return self

    # ---------------------------------------------------------------- forward
    def forward(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.student.extract_feat(inputs)
        raise RuntimeError(
            f'Invalid mode "{mode}"; use loss, predict or tensor.')

    def _needed(self) -> set:
        needed = set(self.connector_inputs.values())
        for mapping in self.loss_inputs.values():
            needed |= set(mapping.values())
        return needed

    def network_outputs(self, inputs: torch.Tensor, data_samples: List
                        ) -> Tuple[Dict[str, torch.Tensor],
                                   Dict[str, torch.Tensor]]:
        """Run both networks; return the student's own losses and the named
        inputs of the connectors/losses (``student.*``, ``teacher.*``,
        ``gt_label``, ``recorder.*``; not ``connector.*``).

        Call it inside ``with self.recorders:`` for ``recorder.*`` values
        (:meth:`loss` does).
        """
        gt = stack_gt_labels(data_samples, inputs.device)
        s_emb = self.student.extract_feat(inputs)
        values = {'gt_label': gt, 'student.embedding': s_emb}
        losses = {}
        if self.run_student_head:  # else a distillation loss classifies
            s_losses, s_out = self.student.loss_by_embedding(s_emb,
                                                             data_samples)
            losses = {f'student.{k}': (v * self.student_loss_weight
                                       if k.startswith('loss') else v)
                      for k, v in s_losses.items()}
            values.update({'student.logits': s_out['logits'],
                           'student.margin_logits': s_out['margin_logits']})
            # a class-sharded head (PartialFCHead): labels as global columns
            if 'column_label' in s_out:
                values['student.column_label'] = s_out['column_label']
        # a sharded teacher head computes its logits on the student's columns
        self._student_columns = None
        if 'student.column_label' in values \
                and isinstance(self.teacher.head, PartialFCHead):
            self._student_columns = s_out['class_index']
        values.update(self._teacher_forward(inputs, gt, self._needed(),
                                            data_samples))
        if self.prompted_teacher_cls_weight:
            losses.update(self._prompted_identity_loss(
                values['teacher.prompted_embedding'], gt))
        for name, rec in self.recorders.items():
            values[f'recorder.{name}'] = rec.data
        return losses, values

    def loss(self, inputs: torch.Tensor,
             data_samples: List) -> Dict[str, torch.Tensor]:
        # record only in this block; the records are dropped on exit
        with self.recorders:
            losses, values = self.network_outputs(inputs, data_samples)
        for name, conn in self.connectors.items():
            values[f'connector.{name}'] = conn(
                values[self.connector_inputs[name]])

        scale = self.distill_weight_scale
        for name, loss_mod in self.distill_losses.items():
            # loss math in float32, whatever autocast the step runs under
            kwargs = {arg: _float32(values[src])
                      for arg, src in self.loss_inputs[name].items()}
            with torch.autocast(inputs.device.type, enabled=False):
                out = loss_mod(**kwargs)
            if isinstance(out, dict):
                out = dict(out)
                losses[f'distill.loss_{name}'] = scale * out.pop('loss')
                for k, v in out.items():
                    losses[f'distill.{name}.{k}'] = v.detach()
            else:
                losses[f'distill.loss_{name}'] = scale * out
        if self.distill_losses:
            losses['distill.weight_scale'] = inputs.new_tensor(scale)
        return losses

    def _teacher_prompted(self) -> bool:
        return bool(getattr(self.teacher.backbone, 'prompts_enabled', False))

    def _teacher_outputs(self, inputs: torch.Tensor, gt: torch.Tensor,
                         needed: set, data_samples: Optional[List] = None
                         ) -> Dict[str, torch.Tensor]:
        if self.teacher_cache is not None:
            t_emb = self.teacher_cache.lookup(data_samples, inputs.device)
        elif self._frozen_inference():
            with torch.inference_mode():
                t_emb = self.teacher.extract_feat(inputs)
            t_emb = t_emb.clone()  # a normal tensor, usable by autograd
        else:
            t_emb = self.teacher.extract_feat(inputs)
        out = {'teacher.embedding': t_emb}
        if needed & {'teacher.logits', 'teacher.margin_logits'}:
            columns = getattr(self, '_student_columns', None)
            t_out = self.teacher.get_logits(
                t_emb, gt, **({} if columns is None else
                              dict(class_index=columns)))
            out['teacher.logits'] = t_out['logits']
            out['teacher.margin_logits'] = t_out['margin_logits']
        return out

    def _frozen_inference(self) -> bool:
        """Whether the teacher backbone may run under ``inference_mode``:
        nothing trains in it and no recorder keeps its features."""
        return not any(p.requires_grad for p in self.teacher.parameters()) \
            and not any(r.network == 'teacher'
                        for r in self.recorders.values())

    def _teacher_forward(self, inputs: torch.Tensor, gt: torch.Tensor,
                         needed: set, data_samples: Optional[List] = None
                         ) -> Dict[str, torch.Tensor]:
        """Teacher outputs; recorders end up holding the prompted pass."""
        trainable = any(p.requires_grad for p in self.teacher.parameters())
        if not self._teacher_prompted():
            with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
                return self._teacher_outputs(inputs, gt, needed,
                                             data_samples)
        out = {}
        reads_outputs = needed & {'teacher.embedding', 'teacher.logits',
                                  'teacher.margin_logits'}
        if reads_outputs:
            # the pretrained teacher's own prediction: no prompts, no grad;
            # run first so the prompted pass below overwrites the recorders
            with torch.no_grad(), self.teacher.backbone.without_prompts():
                out = self._teacher_outputs(inputs, gt, needed)
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            # fills the teacher recorders
            out['teacher.prompted_embedding'] = self.teacher.extract_feat(
                inputs)
        return out

    def _prompted_identity_loss(self, emb: torch.Tensor, gt: torch.Tensor
                                ) -> Dict[str, torch.Tensor]:
        """APT identity anchor: the frozen teacher head's margin softmax on
        the prompted embedding (gradient reaches only the prompts)."""
        head = self.teacher.head
        with torch.autocast(emb.device.type, enabled=False):
            out = head.loss_by_logits(head.get_logits(emb.float(), gt), gt)
        return {'teacher.loss_cls_prompted':
                self.prompted_teacher_cls_weight * out['loss_cls'],
                'teacher.accuracy_prompted': out['accuracy']}

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None) -> List:
        samples = self.student.predict(inputs, data_samples)
        if self.predict_teacher and self.teacher_cache is not None:
            raise RuntimeError(
                'TeacherEvalHook: the teacher cannot be evaluated with '
                'model.teacher_cache set (its backbone is not loaded); '
                'remove the hook or the cache.')
        if self.predict_teacher:
            if self._teacher_prompted():
                with self.teacher.backbone.without_prompts():
                    t_emb, t_norm = self.teacher.embed(inputs)
            else:
                t_emb, t_norm = self.teacher.embed(inputs)
            for ds, e, n in zip(samples, t_emb, t_norm):
                ds.set_field(e.float().cpu(), 'teacher_embedding',
                             field_type='data')
                ds.set_field(n.float().cpu(), 'teacher_xnorm',
                             field_type='data')
        return samples


def _float32(value):
    """Floating tensors as float32 (autocast may hand in half/bfloat16)."""
    if isinstance(value, torch.Tensor) and value.is_floating_point() \
            and value.dtype != torch.float32:
        return value.float()
    return value


class _NoBackbone(nn.Module):
    """Stands in for a teacher backbone replaced by a teacher cache."""

    def __init__(self, cache: str) -> None:
        super().__init__()
        self.cache = cache

    def forward(self, *args, **kwargs):
        raise RuntimeError(
            f'The teacher backbone is not loaded: model.teacher_cache='
            f'{self.cache!r} stands in for it, so only teacher.embedding/'
            'logits/margin_logits are available.')

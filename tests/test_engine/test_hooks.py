"""mmfacekd's hooks with the real MMEngine Runner on tiny models:
DistillWarmupHook (the KD ramp), TeacherEvalHook (teacher embeddings in the
first validation only) and EmbeddingProgressHook (images embedded)."""
import uuid

import pytest
import torch
import torch.nn as nn
from mmengine.dataset import pseudo_collate
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader, Dataset

from mmfacekd.engine.hooks import (
    DistillWarmupHook,
    EmbeddingProgressHook,
    TeacherEvalHook,
)
from mmfacekd.registry import HOOKS


class ToyFaces(Dataset):
    """``n`` uint8 3x32x32 images with labels and verification metainfo."""

    def __init__(self, n: int = 8, num_classes: int = 4) -> None:
        g = torch.Generator().manual_seed(n)
        self.imgs = torch.randint(0, 256, (n, 3, 32, 32), generator=g,
                                  dtype=torch.uint8)
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.imgs)

    def __getitem__(self, i: int) -> dict:
        ds = DataSample().set_gt_label(i % self.num_classes)
        ds.set_metainfo(dict(sample_idx=i, set_name='toy',
                             pair_label=bool(i % 4 < 2)))
        return dict(inputs=self.imgs[i], data_samples=ds)


def loader(n: int = 8, batch_size: int = 4) -> DataLoader:
    return DataLoader(ToyFaces(n), batch_size=batch_size, shuffle=False,
                      collate_fn=pseudo_collate)


class ToyModel(BaseModel):
    """Logs the ``distill_weight_scale`` each training iteration sees."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1)
        self.distill_weight_scale = 1.0
        self.seen = []

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(list(inputs)).float().mean((2, 3)) / 255
        if mode == 'loss':
            self.seen.append(self.distill_weight_scale)
            return dict(loss=self.fc(x).pow(2).mean())
        if mode == 'predict':
            for ds, f in zip(data_samples, self.fc(x)):
                ds.set_field(f.detach(), 'pred_embedding', field_type='data')
            return data_samples
        return self.fc(x)


class CountMetric(BaseMetric):
    """Number of results and how many carry a teacher embedding."""

    default_prefix = 'count'

    def process(self, data_batch, data_samples) -> None:
        for ds in data_samples:
            self.results.append(
                float(ds.get('teacher_embedding', None) is not None))

    def compute_metrics(self, results) -> dict:
        return dict(images=len(results), with_teacher=sum(results))


class MetricsProbe(Hook):
    """Records what every validation/test epoch reported."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.val, self.test = [], []

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.val.append(dict(metrics))

    def after_test_epoch(self, runner, metrics=None) -> None:
        self.test.append(dict(metrics))


def runner(tmp_path, model, epochs=3, iters_per_epoch=2, val=False,
           test=False, **kw) -> Runner:
    cfg = dict(
        model=model, work_dir=str(tmp_path / 'work'),
        experiment_name=f'hooks_{uuid.uuid4().hex[:8]}',
        train_dataloader=loader(4 * iters_per_epoch),
        train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01),
                           constructor='TrainableParamsOptimWrapperConstructor'),
        default_hooks=dict(checkpoint=None, logger=dict(type='LoggerHook',
                                                        interval=1)),
        default_scope='mmfacekd')
    if val:
        cfg.update(val_dataloader=loader(), val_cfg=dict(),
                   val_evaluator=[CountMetric()])
    if test:
        cfg.update(test_dataloader=loader(10), test_cfg=dict(),
                   test_evaluator=[CountMetric()])
    cfg.update(kw)
    return Runner(**cfg)


# ------------------------------------------------------------ warm-up ramp
@pytest.mark.parametrize('by_epoch,warmup,expected', [
    (True, 2, [0, 0, 0.5, 0.5, 1, 1]),
    (False, 4, [0, 0.25, 0.5, 0.75, 1, 1]),
    (True, 0, [1] * 6),
])
def test_distill_warmup_ramp(tmp_path, by_epoch, warmup, expected):
    model = ToyModel()
    r = runner(tmp_path, model, custom_hooks=[dict(
        type='DistillWarmupHook', warmup_epochs=warmup, by_epoch=by_epoch)])
    r.train()
    assert model.seen == pytest.approx(expected)
    assert any(isinstance(h, DistillWarmupHook) for h in r.hooks)


# ------------------------------------------------------- teacher evaluation
def tiny_recognizer():
    return dict(type='FaceRecognizer',
                backbone=dict(type='IResNet', depth=18, base_channels=8,
                              input_size=32, num_features=16),
                head=dict(type='ArcFaceHead', num_classes=4, in_channels=16,
                          s=16.0, m=0.2))


def distiller():
    return dict(type='FaceDistiller', student=tiny_recognizer(),
                teacher=tiny_recognizer(),
                distill_losses=dict(kd=dict(
                    type='KDLoss', temperature=4.0,
                    inputs=dict(student_logits='student.logits',
                                teacher_logits='teacher.logits'))))


def test_teacher_eval_hook_first_validation_only(tmp_path):
    probe = MetricsProbe()
    r = runner(tmp_path, distiller(), epochs=2, iters_per_epoch=1, val=True,
               test=True,
               custom_hooks=[dict(type='TeacherEvalHook'), probe])
    r.train()
    # first validation: every image carries the teacher's embedding; the
    # second one runs the student only
    assert [m['count/with_teacher'] for m in probe.val] == [8, 0]
    assert [m['count/images'] for m in probe.val] == [8, 8]
    model = r.model
    assert model.predict_teacher is False
    assert not model.teacher.training  # validation left the teacher in eval
    r.test()  # modes=('val',): no teacher in test
    assert probe.test[-1]['count/with_teacher'] == 0


def test_teacher_eval_hook_modes_and_every_epoch(tmp_path):
    probe = MetricsProbe()
    hook = TeacherEvalHook(modes=('val', 'test'), once=False)
    r = runner(tmp_path, distiller(), epochs=2, iters_per_epoch=1, val=True,
               test=True, custom_hooks=[hook, probe])
    r.train()
    r.test()
    assert [m['count/with_teacher'] for m in probe.val] == [8, 8]
    assert probe.test[-1]['count/with_teacher'] == 10
    assert r.model.predict_teacher is False
    with pytest.raises(ValueError, match='val/test'):
        TeacherEvalHook(modes=('train', ))
    assert HOOKS.get('TeacherEvalHook') is TeacherEvalHook


def test_teacher_eval_hook_needs_a_distiller(tmp_path):
    r = runner(tmp_path, ToyModel(), epochs=1, iters_per_epoch=1,
               custom_hooks=[dict(type='TeacherEvalHook')])
    with pytest.raises(TypeError, match='needs a model with a teacher'):
        r.train()


# ------------------------------------------------------------ progress bar
class BarProbe(Hook):
    """Reads the progress bar of an EmbeddingProgressHook after each iter."""

    priority = 'LOWEST'

    def __init__(self, bar_hook: EmbeddingProgressHook) -> None:
        self.bar_hook = bar_hook
        self.completed = {'val': [], 'test': []}

    def _read(self, mode):
        bar = self.bar_hook._bar
        self.completed[mode].append(
            None if bar is None else (bar.completed, bar.task_num))

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None) -> None:
        self._read('val')

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None) -> None:
        self._read('test')


def test_embedding_progress_hook_counts_images(tmp_path):
    bar_hook = EmbeddingProgressHook()  # modes=('test',)
    probe = BarProbe(bar_hook)
    r = runner(tmp_path, ToyModel(), epochs=1, iters_per_epoch=1, val=True,
               test=True, custom_hooks=[bar_hook, probe])
    r.train()  # validation: no bar by default
    assert probe.completed['val'] == [None, None]
    r.test()  # 10 images in batches of 4: 4, 8, 10 of 10
    assert probe.completed['test'] == [(4, 10), (8, 10), (10, 10)]
    assert bar_hook._bar is None  # closed after the epoch

    both = EmbeddingProgressHook(modes=('val', 'test'))
    probe = BarProbe(both)
    r = runner(tmp_path, ToyModel(), epochs=1, iters_per_epoch=1, val=True,
               custom_hooks=[both, probe])
    r.train()
    assert probe.completed['val'] == [(4, 8), (8, 8)]

"""Distillation with the real Runner: GKD iterations, resume, 2-process gloo,
student extraction, prototype head.

The single-process tools run as processes forked from a server that has
imported torch, MMEngine and mmfacekd once (tests/tool_server.py)."""
import os
import os.path as osp
import subprocess
import sys

import torch
import torch.nn.functional as F
from mmengine.runner import Runner
from tool_server import shared_server

from conftest import ROOT, TINY_IDS, tiny_model_config

TEACHER = 'configs/demo/arcface_r18_synth.py'
GKD = 'configs/demo/gkd_r18_mbf_synth.py'
STUDENT = 'configs/demo/arcface_mbf_synth.py'


def _teacher(tiny_synth, tmp_path):
    cfg = tiny_model_config(TEACHER, tiny_synth, str(tmp_path / 'teacher'),
                            epochs=8)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint.interval = 8
    Runner.from_cfg(cfg).train()
    return str(tmp_path / 'teacher' / 'epoch_8.pth')


def test_gkd_train_resume_extract_prototypes_and_dist(tiny_synth, tmp_path):
    teacher_ckpt = _teacher(tiny_synth, tmp_path)

    # GKD iterations with the real Runner; every GKD term is logged
    cfg = tiny_model_config(GKD, tiny_synth, str(tmp_path / 'gkd'), epochs=2,
                            model=dict(teacher_ckpt=teacher_ckpt))
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='TeacherEvalHook')]
    runner = Runner.from_cfg(cfg)
    runner.train()
    log = open(runner.logger.log_file).read()
    for key in ('student.loss_cls', 'distill.loss_gkd',
                'distill.gkd.primary_kd',
                'distill.gkd.binary_kd', 'distill.gkd.k_mean',
                'distill.gkd.p_phi_t', 'teacher/synth_lfw/accuracy',
                'synth_lfw/accuracy'):
        assert key in log, key
    ckpt = torch.load(tmp_path / 'gkd' / 'epoch_2.pth', weights_only=True)
    assert not any(k.startswith('teacher.') for k in ckpt['state_dict'])

    # resume the distillation run from epoch 1
    cfg2 = tiny_model_config(GKD, tiny_synth, str(tmp_path / 'gkd_resume'),
                             epochs=2, model=dict(teacher_ckpt=teacher_ckpt))
    cfg2.resume, cfg2.load_from = True, str(tmp_path / 'gkd' / 'epoch_1.pth')
    cfg2.val_cfg = cfg2.val_dataloader = cfg2.val_evaluator = None
    r2 = Runner.from_cfg(cfg2)
    r2.train()
    assert r2.iter == runner.iter and r2.epoch == 2

    # plain student checkpoint -> tools/test.py with the plain student config
    student_ckpt = str(tmp_path / 'student.pth')
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    tools = shared_server(env, ROOT)
    rc, out = tools.run(['tools/misc/extract_student.py',
                         str(tmp_path / 'gkd' / 'epoch_2.pth'), student_ckpt],
                        ROOT, str(tmp_path / 'extract.log'), env)
    assert rc == 0, out[-2000:]
    scfg = tiny_model_config(STUDENT, tiny_synth, str(tmp_path / 'stest'))
    scfg_path = str(tmp_path / 'student_cfg.py')
    scfg.dump(scfg_path)
    rc, out = tools.run(['tools/test.py', scfg_path, student_ckpt,
                         '--out', str(tmp_path / 's.json')],
                        ROOT, str(tmp_path / 'test.log'), env)
    assert rc == 0, out[-2000:]
    assert 'unexpected key' not in out
    assert 'missing keys' not in out

    # prototype head: class means of the teacher's normalized embeddings
    head_path = str(tmp_path / 'proto.pth')
    dcfg_path = str(tmp_path / 'gkd_cfg.py')
    cfg.dump(dcfg_path)
    rc, out = tools.run(['tools/misc/build_prototype_head.py', dcfg_path,
                         '--out', head_path, '--num-workers', '0'],
                        ROOT, str(tmp_path / 'proto.log'), env)
    assert rc == 0, out[-2000:]
    weight = torch.load(head_path, weights_only=True)['state_dict']['weight']
    assert weight.shape == (TINY_IDS, 128)
    # independent computation in the test + classification of the teacher's
    # own training images by the prototype logits
    teacher = runner.model.teacher.eval()
    from mmfacekd.datasets import MXRecordDataset
    ds = MXRecordDataset(tiny_synth, pipeline=[dict(type='LoadFaceImage'),
                                               dict(type='PackFaceInputs')])
    items = [ds.prepare_data(i) for i in range(len(ds))]
    with torch.no_grad():  # one batch (eval mode: per-sample results)
        x = runner.model.data_preprocessor(
            dict(inputs=[item['inputs'] for item in items],
                 data_samples=[item['data_samples'] for item in items]))
        embs = F.normalize(teacher.extract_feat(x['inputs']))
    labels = torch.tensor([item['data_samples'].gt_label.item()
                           for item in items])
    means = F.normalize(torch.stack([embs[labels == c].mean(0)
                                     for c in range(TINY_IDS)]))
    assert torch.allclose(means, weight, atol=1e-5)
    acc = ((embs @ weight.t()).argmax(1) == labels).float().mean().item()
    head_acc = ((embs @ F.normalize(teacher.head.weight).t()).argmax(1)
                == labels).float().mean().item()
    # chance is 1/12; the prototypes must do at least as well as the
    # teacher's own trained classifier
    assert acc > 0.5 and acc >= head_acc - 0.05, (acc, head_acc)

    # the distiller takes logits from the prototype head (backbone-only
    # teacher)
    raw = {k[len('backbone.'):]: v for k, v in torch.load(
        teacher_ckpt, weights_only=True)['state_dict'].items()
        if k.startswith('backbone.')}
    torch.save(raw, tmp_path / 'backbone.pth')
    cfg3 = tiny_model_config(
        GKD, tiny_synth, str(tmp_path / 'gkd_proto'),
        model=dict(teacher_ckpt=str(tmp_path / 'backbone.pth'),
                   teacher_revise_keys=[(r'^', 'backbone.')],
                   teacher_head_ckpt=head_path))
    from mmfacekd.registry import MODELS
    distiller = MODELS.build(cfg3.model)
    assert torch.equal(distiller.teacher.head.weight, weight)

    # 2 CPU processes through tools/dist_train.sh
    dist_cfg = str(tmp_path / 'gkd_dist.py')
    cfg.train_cfg.max_epochs = 1
    cfg.custom_hooks = [h for h in cfg.custom_hooks
                        if h['type'] != 'TeacherEvalHook']
    cfg.dump(dist_cfg)
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', dist_cfg, '2', '--work-dir',
         str(tmp_path / 'gkd_dist')],
        cwd=ROOT, env=dict(env, PYTHON=sys.executable, PORT='29544'),
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert osp.isfile(tmp_path / 'gkd_dist' / 'epoch_1.pth')

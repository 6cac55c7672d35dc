"""`make demo`: the main job on the embedded synthetic face set, on CPU.

1. Generate ``data/synthetic`` unless it is there: RecordIO training set,
   .bin pair sets, a 1:N identification set and an IJB-style template
   bundle, each in its real on-disk format.
2. Train each demo model with the real Runner (``tools/train.py``), unless
   its work dir already has a finished checkpoint: the CNN teacher, the
   student alone, KD and GKD (the main job). KD and GKD read the teacher's
   embeddings from a cache written once (``tools/misc/cache_teacher.py``).
3. Evaluate each with ``tools/test.py`` on the synthetic suite: three
   3,000-pair verification sets, the IJB-style bundle (TPR@FPR) and the 1:N
   set (Rank-1, TPR@FPR), every number with its 95 % bootstrap CI and, for
   KD and GKD, the paired difference to the student on the same pairs.
4. Print a table and save it as ``work_dirs/demo/results.{md,json}``:
   every metric as ``value [low, high]`` (its 95 % seeded bootstrap
   interval), and for each distilled row the paired difference against the
   plain student on the same test pairs, ``Δ … vs student [low, high]``
   (mean verification accuracy, IJB TPR@FPR=1e-4, 1:N Rank-1), computed
   from the per-pair scores both test runs dump to ``<work_dir>/scores``.
   An interval of a Δ that excludes 0 is a gap the test sets resolve.
   ``make comparison`` (tools/analysis/run_comparison.py) adds every other
   distillation method, the ViT teacher + CAKD, the masked M-M/M-N sets and
   3 seeds of student / KD / GKD on the same data (it is not part of the
   20-minute demo budget).
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from mmfacekd.evaluation import (  # noqa: E402
    paired_comparison,
    summary_columns,
    summary_markdown,
)
from mmfacekd.utils.job_runner import JobFailed, run_logged, train_and_test  # noqa: E402

DATA = osp.join(ROOT, 'data', 'synthetic')
WORK = osp.join(ROOT, 'work_dirs', 'demo')

# (row name, config, where to publish the final checkpoint); teachers come
# before the students that load them from checkpoints/demo/.
TEACHER_CKPT = osp.join('checkpoints', 'demo', 'arcface_r18_synth.pth')
# KD and GKD read the teacher's embeddings from one cache
# (tools/misc/cache_teacher.py, written once after the teacher trained)
# instead of running the teacher backbone every step
TEACHER_CACHE = osp.join('work_dirs', 'demo', 'teacher_cache',
                         'arcface_r18_synth.npy')
STAGES = [
    ('teacher IR18-w16', 'configs/demo/arcface_r18_synth.py', TEACHER_CKPT,
     None),
    ('student MBF-slim', 'configs/demo/arcface_mbf_synth.py', None, None),
    ('KD (T=4)', 'configs/demo/kd_r18_mbf_synth.py', None, TEACHER_CACHE),
    ('GKD (tau=0.93, T=4)', 'configs/demo/gkd_r18_mbf_synth.py', None,
     TEACHER_CACHE),
]
# the plain student, and the rows compared with it pair by pair
STUDENT = 'student MBF-slim'
DISTILLED = ('KD (T=4)', 'GKD (tau=0.93, T=4)')


def paired_deltas(rows, student=STUDENT, distilled=DISTILLED):
    """Per row: ``{key: (Δ, low, high)}`` against the student's dumped
    scores (None for the student, the teachers and rows without dumps)."""
    base = next((r for r in rows if r['name'] == student), None)
    out = []
    for r in rows:
        d = None
        if base is not None and r['name'] in distilled:
            d = paired_comparison(osp.join(r['work_dir'], 'scores'),
                                  osp.join(base['work_dir'], 'scores')) \
                or None
        out.append(d)
    return out


def count_params(config):
    from mmengine.config import Config

    from mmfacekd.registry import MODELS
    from mmfacekd.utils import register_all_modules
    register_all_modules()
    model = MODELS.build(Config.fromfile(osp.join(ROOT, config)).model)
    student = getattr(model, 'student', model)
    return sum(p.numel() for p in student.backbone.parameters()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--retrain', action='store_true',
                        help='train again even if checkpoints exist')
    args = parser.parse_args()
    t_start = time.time()
    os.makedirs(WORK, exist_ok=True)
    timings = {}
    try:
        # the training set + .bin pair sets, the 1:N identification set and
        # the IJB-style template bundle: generate whatever is missing
        gen = [sys.executable, 'tools/misc/make_synthetic_faces.py', DATA]
        parts = [('identification', '--identification'), ('ijb', '--ijb')]
        missing = [opt for sub, opt in parts
                   if not osp.isfile(osp.join(DATA, sub, 'meta.json'))]
        t0 = time.time()
        if not osp.isfile(osp.join(DATA, 'meta.json')):
            run_logged(gen + missing,
                       osp.join(WORK, 'make_synthetic_faces.log'), root=ROOT)
        else:
            for opt in missing:
                run_logged(gen + [opt + '-only'],
                           osp.join(WORK, f'make_synthetic_faces{opt}.log'),
                           root=ROOT)
        if missing or time.time() - t0 > 1:
            timings['generate data'] = time.time() - t0
        rows = []
        for name, config, publish, cache in STAGES:
            stem = osp.splitext(osp.basename(config))[0]
            rec = train_and_test(config, osp.join(WORK, stem),
                                 retrain=args.retrain, name=name, root=ROOT,
                                 teacher_cache=cache)
            if publish:
                dst = osp.join(ROOT, publish)
                os.makedirs(osp.dirname(dst), exist_ok=True)
                shutil.copyfile(rec['checkpoint'], dst)
            timings[name] = (rec['train_s'], rec['test_s'])
            rows.append(dict(name=name, params_M=count_params(config),
                             work_dir=osp.join(WORK, stem), **rec))
    except JobFailed as e:
        sys.exit(str(e))

    columns = summary_columns([r['metrics'] for r in rows])
    deltas = paired_deltas(rows)
    for r, d in zip(rows, deltas):
        r['paired_vs_student'] = d
    table = summary_markdown(
        [(r['name'], r['metrics']) for r in rows], columns, deltas=deltas,
        lead=[('backbone params (M)', [f"{r['params_M']:.2f}"
                                       for r in rows])])
    total = time.time() - t_start
    print('\nSynthetic evaluation suite (%): verification accuracy '
          '(10-fold), IJB-style TPR@FPR, 1:N Rank-1 / TPR@FPR; '
          'value [95% bootstrap CI]; Δ vs student: paired '
          'difference on the same pairs [95% CI], percentage points:\n')
    print(table)
    stages = ', '.join(
        f'{k}: {round(v) if isinstance(v, float) else tuple(map(round, v))}'
        for k, v in timings.items())
    print(f'\nwall time {total / 60:.1f} min; per stage (train s, test s): '
          f'{stages}')
    with open(osp.join(WORK, 'results.md'), 'w') as f:
        f.write(table + '\n')
    with open(osp.join(WORK, 'results.json'), 'w') as f:
        json.dump(dict(columns=[dict(title=t, key=k) for t, k in columns],
                       rows=rows, wall_time_s=total), f, indent=1)


if __name__ == '__main__':
    main()

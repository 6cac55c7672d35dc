"""`make demo`: the main job on the embedded synthetic face set, on CPU.

1. Generate ``data/synthetic`` (RecordIO + .bin) unless it is there.
2. Train each demo model with the real Runner (``tools/train.py``), unless
   its work dir already has a finished checkpoint.
3. Evaluate each with ``tools/test.py`` on the synthetic .bin sets.
4. Print a table (accuracy ± std per set) and save it as
   ``work_dirs/demo/results.{md,json}``.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DATA = osp.join(ROOT, 'data', 'synthetic')
WORK = osp.join(ROOT, 'work_dirs', 'demo')
SETS = ['synth_lfw', 'synth_cfp', 'synth_agedb']

# (row name, config, where to publish the final checkpoint); the teacher
# comes first: the distillers load it from checkpoints/demo/.
TEACHER_CKPT = osp.join('checkpoints', 'demo', 'arcface_r18_synth.pth')
STAGES = [
    ('teacher IR18-w16', 'configs/demo/arcface_r18_synth.py', TEACHER_CKPT),
    ('student MBF-slim', 'configs/demo/arcface_mbf_synth.py', None),
    ('KD (T=4)', 'configs/demo/kd_r18_mbf_synth.py', None),
    ('GKD (tau=0.93, T=4)', 'configs/demo/gkd_r18_mbf_synth.py', None),
]


def run(cmd, log_path):
    print('$', ' '.join(cmd), f'  (log: {osp.relpath(log_path, ROOT)})',
          flush=True)
    with open(log_path, 'w') as log:
        ret = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if ret.returncode != 0:
        tail = open(log_path).read()[-3000:]
        sys.exit(f'command failed ({ret.returncode}); end of {log_path}:\n{tail}')


def last_checkpoint(work_dir):
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    ckpt = open(path).read().strip()
    return ckpt if osp.isfile(ckpt) else None


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
    py = sys.executable
    t_start = time.time()
    os.makedirs(WORK, exist_ok=True)
    timings = {}
    if not osp.isfile(osp.join(DATA, 'meta.json')):
        t0 = time.time()
        run([py, 'tools/misc/make_synthetic_faces.py', DATA],
            osp.join(WORK, 'make_synthetic_faces.log'))
        timings['generate data'] = time.time() - t0
    rows = []
    for name, config, publish in STAGES:
        stem = osp.splitext(osp.basename(config))[0]
        work_dir = osp.join(WORK, stem)
        os.makedirs(work_dir, exist_ok=True)
        ckpt = None if args.retrain else last_checkpoint(work_dir)
        t0 = time.time()
        if ckpt is None:
            run([py, 'tools/train.py', config, '--work-dir', work_dir,
                 '--no-validate'], osp.join(work_dir, 'train.log'))
            ckpt = last_checkpoint(work_dir)
        t1 = time.time()
        if publish:
            os.makedirs(osp.dirname(osp.join(ROOT, publish)), exist_ok=True)
            shutil.copyfile(ckpt, osp.join(ROOT, publish))
        out = osp.join(work_dir, 'eval.json')
        run([py, 'tools/test.py', config, ckpt, '--work-dir', work_dir,
             '--out', out], osp.join(work_dir, 'test.log'))
        timings[name] = (t1 - t0, time.time() - t1)
        metrics = json.load(open(out))['metrics']
        rows.append(dict(name=name, config=config, checkpoint=ckpt,
                         params_M=count_params(config), metrics=metrics))

    header = ('| model | backbone params (M) | ' +
              ' | '.join(SETS) + ' | mean |')
    lines = [header, '|' + '---|' * (len(SETS) + 3)]
    for r in rows:
        m = r['metrics']
        cells = [f"{m[f'{s}/accuracy']:.2f} ± {m[f'{s}/accuracy_std']:.2f}"
                 for s in SETS]
        lines.append(f"| {r['name']} | {r['params_M']:.2f} | " +
                     ' | '.join(cells) + f" | {m['mean/accuracy']:.2f} |")
    table = '\n'.join(lines)
    total = time.time() - t_start
    print('\nVerification accuracy (%) on the synthetic pair sets, 10-fold '
          'protocol, mean ± std:\n')
    print(table)
    print(f'\nwall time {total / 60:.1f} min; per stage (train s, test s): ' +
          ', '.join(f'{k}: {v if isinstance(v, float) else tuple(round(x) for x in v)}'
                    for k, v in timings.items()))
    with open(osp.join(WORK, 'results.md'), 'w') as f:
        f.write(table + '\n')
    with open(osp.join(WORK, 'results.json'), 'w') as f:
        json.dump(dict(rows=rows, wall_time_s=total), f, indent=1)


if __name__ == '__main__':
    main()

"""Train (or re-evaluate) several configs and tabulate them like GKD Table 5.

    # any list of configs, e.g. the MS1MV2 zoo on 8 GPUs
    python tools/analysis/run_comparison.py configs/kd_r50_mbf.py \\
        configs/ekd_r50_mbf.py configs/gkd_r50_mbf.py --procs 8 \\
        --test-config configs/eval/full_suite.py
    # every method at CPU scale on the synthetic demo set
    python tools/analysis/run_comparison.py --preset synthetic

Each config is trained with the real tools (``tools/train.py`` or
``tools/dist_train.sh``) into ``<work-root>/<config name>`` unless that work
dir already holds a finished checkpoint (``--retrain`` forces it,
``--eval-only`` never trains), then evaluated with ``tools/test.py``.
Written to ``--out-dir``: ``comparison.md`` (rows = methods, columns in the
papers' order: IJB-C, IJB-B, MegaFace, LFW, CFP-FP, CPLFW, AgeDB-30, CALFW,
then any other set), ``comparison.json`` and ``comparison.png`` (bar plot).
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
import time
from typing import Dict, List, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from mmfacekd.evaluation import summary_columns, summary_markdown  # noqa
from mmfacekd.utils.job_runner import JobFailed, train_and_test  # noqa

# The synthetic preset: the demo teacher (published where the demo
# distillers load it), the student alone, then every distillation method.
SYNTHETIC_TEACHER = ('configs/demo/arcface_r18_synth.py',
                     'checkpoints/demo/arcface_r18_synth.pth')
SYNTHETIC_METHODS = [
    ('Student MBF', 'configs/demo/arcface_mbf_synth.py'),
    ('KD', 'configs/demo/kd_r18_mbf_synth.py'),
    ('FitNet', 'configs/demo/fitnet_r18_mbf_synth.py'),
    ('RKD', 'configs/demo/rkd_r18_mbf_synth.py'),
    ('SP', 'configs/demo/sp_r18_mbf_synth.py'),
    ('CCKD', 'configs/demo/cckd_r18_mbf_synth.py'),
    ('DarkRank', 'configs/demo/darkrank_r18_mbf_synth.py'),
    ('ShrinkTeaNet', 'configs/demo/shrinkteanet_r18_mbf_synth.py'),
    ('TripletDistillation', 'configs/demo/triplet_r18_mbf_synth.py'),
    ('MarginDistillation',
     'configs/demo/margin_distillation_r18_mbf_synth.py'),
    ('DKD', 'configs/demo/dkd_r18_mbf_synth.py'),
    ('EKD', 'configs/demo/ekd_r18_mbf_synth.py'),
    ('GKD', 'configs/demo/gkd_r18_mbf_synth.py'),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='*', help='configs, one row each')
    parser.add_argument('--names', nargs='+', help='row names (default: '
                        'config names)')
    parser.add_argument('--preset', choices=['synthetic'],
                        help='a predefined list (teacher + student + every '
                        'method on the synthetic demo set)')
    parser.add_argument('--teacher', metavar='CONFIG:CKPT',
                        help='train this teacher first (first row) and copy '
                        'its checkpoint to CKPT, where the distillers load it')
    parser.add_argument('--work-root', default=None,
                        help='work dirs are <work-root>/<config name> '
                        '(default work_dirs/comparison; the synthetic preset '
                        'shares work_dirs/demo with `make demo`)')
    parser.add_argument('--out-dir', help='where the table goes (default: '
                        'the work root)')
    parser.add_argument('--procs', type=int, default=1,
                        help='processes (GPUs) per training job')
    parser.add_argument('--test-config', help='evaluate every checkpoint '
                        'with this config (e.g. the full evaluation suite)')
    parser.add_argument('--eval-only', action='store_true',
                        help='evaluate existing work dirs, never train')
    parser.add_argument('--retrain', action='store_true',
                        help='train even if a finished checkpoint exists')
    parser.add_argument('--keep-going', action='store_true',
                        help='a failing job becomes an empty row instead of '
                        'stopping the comparison')
    return parser.parse_args()


def plot(rows: List[Tuple[str, Dict[str, float]]],
         columns: List[Tuple[str, str]], path: str) -> None:
    """One panel per column, one bar per method, values on the bars."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cols = [c for c in columns if c[1] != 'mean/accuracy'] or columns
    fig, axes = plt.subplots(1, len(cols), squeeze=False,
                             figsize=(max(4.0, 0.45 * len(rows)) * len(cols),
                                      4.5))
    names = [n for n, _ in rows]
    for ax, (title, key) in zip(axes[0], cols):
        vals = [m.get(key, float('nan')) for _, m in rows]
        finite = [v for v in vals if v == v]
        bars = ax.bar(range(len(rows)), [v if v == v else 0 for v in vals],
                      color=['#888888' if i == 0 else '#3b75af'
                             for i in range(len(rows))])
        if finite:
            lo, hi = min(finite), max(finite)
            pad = max(0.5, 0.15 * (hi - lo))
            ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
        for b, v in zip(bars, vals):
            if v == v:
                ax.annotate(f'{v:.2f}', (b.get_x() + b.get_width() / 2,
                                         b.get_height()),
                            ha='center', va='bottom', fontsize=7)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, rotation=60, ha='right', fontsize=8)
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    jobs = [(n, c) for n, c in zip(args.names or [], args.configs)]
    jobs += [(osp.splitext(osp.basename(c))[0], c)
             for c in args.configs[len(jobs):]]
    teacher = None
    if args.teacher:
        cfg, _, ckpt = args.teacher.partition(':')
        if not ckpt:
            sys.exit('--teacher takes CONFIG:CKPT (where to publish the '
                     'teacher checkpoint for the distillers)')
        teacher = (cfg, ckpt)
    if args.preset == 'synthetic':
        teacher = teacher or SYNTHETIC_TEACHER
        jobs = SYNTHETIC_METHODS + jobs
        work_root = args.work_root or osp.join('work_dirs', 'demo')
        if not osp.isfile(osp.join(ROOT, 'data', 'synthetic', 'meta.json')):
            sys.exit('data/synthetic is missing: run `make demo` (or '
                     'python tools/misc/make_synthetic_faces.py '
                     'data/synthetic) first')
    else:
        work_root = args.work_root or osp.join('work_dirs', 'comparison')
    if not jobs and teacher is None:
        sys.exit('nothing to compare: give configs or --preset')
    out_dir = args.out_dir or work_root
    os.makedirs(out_dir, exist_ok=True)
    if teacher:
        jobs = [('Teacher', teacher[0])] + jobs

    rows, records, t_start = [], [], time.time()
    for name, config in jobs:
        stem = osp.splitext(osp.basename(config))[0]
        try:
            rec = train_and_test(
                config, osp.join(work_root, stem), retrain=args.retrain,
                train=not args.eval_only, procs=args.procs,
                test_config=args.test_config, name=name)
        except (JobFailed, FileNotFoundError) as e:
            if not args.keep_going:
                sys.exit(str(e))
            print(f'[{name}] FAILED: {e}', file=sys.stderr)
            rec = dict(config=config, checkpoint=None, metrics={},
                       error=str(e)[-500:])
        if teacher and config == teacher[0] and rec.get('checkpoint'):
            dst = osp.join(ROOT, teacher[1])
            os.makedirs(osp.dirname(dst), exist_ok=True)
            shutil.copyfile(rec['checkpoint'], dst)
        rows.append((name, rec['metrics']))
        records.append(dict(name=name, **rec))
        print(f'[{name}] done: ' + ', '.join(
            f'{k}={v:.2f}' for k, v in rec['metrics'].items()
            if k.endswith(('mean/accuracy', 'tpr@fpr1e-4', 'rank1'))),
            flush=True)

    columns = summary_columns([m for _, m in rows])
    table = summary_markdown(rows, columns)
    with open(osp.join(out_dir, 'comparison.md'), 'w') as f:
        f.write(table + '\n')
    with open(osp.join(out_dir, 'comparison.json'), 'w') as f:
        json.dump(dict(columns=[dict(title=t, key=k) for t, k in columns],
                       rows=records, wall_time_s=time.time() - t_start), f,
                  indent=1)
    plot(rows, columns, osp.join(out_dir, 'comparison.png'))
    print('\n' + table)
    print(f'\nsaved {osp.join(out_dir, "comparison.{md,json,png}")} '
          f'({(time.time() - t_start) / 60:.1f} min)')


if __name__ == '__main__':
    main()

"""Train (or re-evaluate) several configs and tabulate them like GKD Table 5.

    # any list of configs, e.g. the MS1MV2 zoo on 8 GPUs
    python tools/analysis/run_comparison.py configs/kd/kd_r50_mbf.py \\
        configs/ekd/ekd_r50_mbf.py configs/gkd/gkd_r50_mbf.py --procs 8 \\
        --suite configs/_base_/datasets/paper_suite.py
    # every method at CPU scale on the synthetic demo set
    python tools/analysis/run_comparison.py --preset synthetic
    # the CAKD ablation there (ViT teacher; table in
    # work_dirs/demo/cakd_ablation)
    python tools/analysis/run_comparison.py --preset cakd

Each config is trained with the real tools (``tools/train.py`` or
``tools/dist_train.sh``) into ``<work-root>/<config name>`` unless that work
dir already holds a finished checkpoint (``--retrain`` forces it,
``--eval-only`` never trains), then evaluated with ``tools/test.py``.
Written to ``--out-dir``: ``comparison.md`` (rows = methods, columns in the
papers' order: IJB-C, IJB-B, MegaFace, LFW, CFP-FP, CPLFW, AgeDB-30, CALFW,
then any other set), ``comparison.json`` and ``comparison.png`` (bar plot).

Every cell is ``value [low, high]``, the metric with its 95 % seeded
bootstrap interval (over pairs / templates / probes), and every row after
the student gets paired columns ``Δ <metric> vs student [low, high]`` on the
headline metrics (mean verification accuracy, IJB TPR@FPR=1e-4, 1:N
Rank-1): the difference on the SAME test pairs, bootstrapped with the same
resamples for both runs, from the per-pair scores each test run dumps to
``<work_dir>/scores``. The student is the row named by ``--student`` (the
synthetic preset: 'Student MBF'; default: the first non-teacher row).

Seeds: ``--seeds 3`` (seeds 0, 1, 2) or ``--seeds 0 1 2`` trains the rows
named by ``--seeded`` (synthetic preset: the student, KD and GKD; default:
every non-teacher row) once per seed (``--cfg-options randomness.seed=S``,
work dirs ``<work-root>/<config name>_seed<S>``, except seed 0 — the
configs' own seed — which is ``<work-root>/<config name>``, the run ``make
demo`` leaves); the other rows stay single-seed there too. Then
``comparison.md`` also holds an across-seed table: ``mean ± std``
(ddof 1) over the seeds of every metric and of each seed's paired Δ
against the student of the same seed.

    # 3 seeds of student, KD and GKD (+ the other methods once)
    python tools/analysis/run_comparison.py --preset synthetic --seeds 3
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

from mmfacekd.evaluation import (paired_comparison,  # noqa
                                 seed_summary_markdown, summary_columns,
                                 summary_markdown)
from mmengine.config import Config  # noqa: E402

from mmfacekd.models.distillers.teacher_cache import cache_compatible  # noqa
from mmfacekd.utils.job_runner import JobFailed, train_and_test  # noqa

# The synthetic preset: the demo teacher (published where the demo
# distillers load it), the student alone, then every distillation method.
SYNTHETIC_TEACHER = ('configs/demo/arcface_r18_synth.py',
                     'checkpoints/demo/arcface_r18_synth.pth')
# the cache make demo writes; every method that can (no teacher recorders,
# no trainable teacher) reads its teacher from it
SYNTHETIC_CACHE = 'work_dirs/demo/teacher_cache/arcface_r18_synth.npy'
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
    ('AdaDistill', 'configs/demo/adadistill_r18_mbf_synth.py'),
    ('GKD', 'configs/demo/gkd_r18_mbf_synth.py'),
    ('GKD s*cos logits', 'configs/demo/gkd_cos_r18_mbf_synth.py'),
]
SYNTHETIC_STUDENT = 'Student MBF'
# The CAKD ablation (issue 15): the demo ViT teacher, the same student, and
# URFM only / APT only / both / both + the APT identity anchor
CAKD_TEACHER = ('configs/demo/arcface_vit_synth.py',
                'checkpoints/demo/arcface_vit_synth.pth')
CAKD_METHODS = [
    ('Student MBF', 'configs/demo/arcface_mbf_synth.py'),
    ('CAKD URFM only', 'configs/demo/cakd_urfm_only_vit_mbf_synth.py'),
    ('CAKD APT only', 'configs/demo/cakd_apt_only_vit_mbf_synth.py'),
    ('CAKD URFM + APT', 'configs/demo/cakd_vit_mbf_synth.py'),
    ('CAKD URFM + APT + anchor', 'configs/demo/cakd_anchor_vit_mbf_synth.py'),
]
SYNTHETIC_SEEDED = ('Student MBF', 'KD', 'GKD', 'GKD s*cos logits')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='*', help='configs, one row each')
    parser.add_argument('--names', nargs='+', help='row names (default: '
                        'config names)')
    parser.add_argument('--preset', choices=['synthetic', 'cakd'],
                        help='a predefined list on the synthetic demo set: '
                        "'synthetic' = teacher + student + every method; "
                        "'cakd' = the ViT teacher + student + the CAKD "
                        'ablation (URFM only / APT only / both / + anchor)')
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
    parser.add_argument('--suite', help='evaluate every checkpoint on this '
                        'suite (tools/test.py --suite), e.g. configs/_base_/'
                        'datasets/synthetic_masked.py')
    parser.add_argument('--eval-only', action='store_true',
                        help='evaluate existing work dirs, never train')
    parser.add_argument('--retrain', action='store_true',
                        help='train even if a finished checkpoint exists')
    parser.add_argument('--seeds', type=int, nargs='+', default=None,
                        help='one number N: seeds 0..N-1; several: those '
                        'seeds; for the rows of --seeded')
    parser.add_argument('--seeded', nargs='+', metavar='NAME',
                        help='row names trained once per seed (synthetic '
                        'preset: the student, KD and GKD; default: every '
                        'non-teacher row)')
    parser.add_argument('--student', metavar='NAME',
                        help='the baseline of the paired Δ columns '
                        '(default: the synthetic student, else the first '
                        'non-teacher row)')
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


def parse_seeds(seeds):
    """``[N]`` -> ``0..N-1``; several values -> those; None -> None."""
    if not seeds:
        return None
    if len(seeds) == 1:
        if seeds[0] < 1:
            sys.exit(f'--seeds N needs N >= 1, got {seeds[0]}')
        return list(range(seeds[0]))
    return list(seeds)


def paired_deltas(records: List[dict], student: str) -> List:
    """Per run: paired Δ vs the student run of the same seed (or the only
    student run), from the dumped scores; None for the student itself, the
    teacher and failed runs."""
    base = {r['seed']: r for r in records
            if r['method'] == student and r.get('checkpoint')}
    out = []
    for r in records:
        # a single-seed row ran with the config's seed (0 in the demo
        # configs): the unseeded or seed-0 student, else the only one
        b = base.get(r['seed']) or base.get(None) or base.get(0) or (
            next(iter(base.values())) if len(base) == 1 else None)
        if r['method'] == student or r['method'] == 'Teacher' or b is None \
                or not r.get('checkpoint'):
            out.append(None)
            continue
        out.append(paired_comparison(osp.join(r['work_dir'], 'scores'),
                                     osp.join(b['work_dir'], 'scores'))
                   or None)
    return out


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
    if args.preset in ('synthetic', 'cakd'):
        if args.preset == 'synthetic':
            teacher = teacher or SYNTHETIC_TEACHER
            jobs = SYNTHETIC_METHODS + jobs
        else:
            teacher = teacher or CAKD_TEACHER
            jobs = CAKD_METHODS + jobs
        work_root = args.work_root or osp.join('work_dirs', 'demo')
        if not osp.isfile(osp.join(ROOT, 'data', 'synthetic', 'meta.json')):
            sys.exit('data/synthetic is missing: run `make demo` (or '
                     'python tools/misc/make_synthetic_faces.py '
                     'data/synthetic) first')
    else:
        work_root = args.work_root or osp.join('work_dirs', 'comparison')
    if not jobs and teacher is None:
        sys.exit('nothing to compare: give configs or --preset')
    out_dir = args.out_dir or (osp.join(work_root, 'cakd_ablation')
                               if args.preset == 'cakd' else work_root)
    os.makedirs(out_dir, exist_ok=True)
    if teacher:
        jobs = [('Teacher', teacher[0])] + jobs

    seeds = parse_seeds(args.seeds)
    first = [n for n, c in jobs if not (teacher and c == teacher[0])]
    student = args.student or (SYNTHETIC_STUDENT if args.preset else (
        first[0] if first else None))
    seeded = set(args.seeded or (SYNTHETIC_SEEDED if args.preset ==
                                 'synthetic' else first)) if seeds else set()

    # (row name, config, seed or None, work dir), seeds inner
    runs = []
    for name, config in jobs:
        stem = osp.splitext(osp.basename(config))[0]
        if name in seeded:
            # seed 0 is the configs' own (default_runtime): the unseeded dir
            runs += [(name, config, s, osp.join(
                work_root, stem if s == 0 else f'{stem}_seed{s}'))
                for s in seeds]
        else:
            runs.append((name, config, None, osp.join(work_root, stem)))

    rows, records, t_start = [], [], time.time()
    for name, config, seed, work_dir in runs:
        train_args = ['--no-validate']
        if seed is not None:
            train_args += ['--cfg-options', f'randomness.seed={seed}']
        label = name if seed is None else f'{name} (seed {seed})'
        cache = None
        if args.preset == 'synthetic' and cache_compatible(
                Config.fromfile(osp.join(ROOT, config))):
            cache = SYNTHETIC_CACHE
        try:
            rec = train_and_test(
                config, work_dir, retrain=args.retrain,
                train=not args.eval_only, procs=args.procs,
                train_args=train_args,
                test_args=['--suite', args.suite] if args.suite else (),
                test_config=args.test_config, name=label, root=ROOT,
                teacher_cache=cache)
        except (JobFailed, FileNotFoundError) as e:
            if not args.keep_going:
                sys.exit(str(e))
            print(f'[{label}] FAILED: {e}', file=sys.stderr)
            rec = dict(config=config, checkpoint=None, metrics={},
                       error=str(e)[-500:])
        if teacher and config == teacher[0] and rec.get('checkpoint'):
            dst = osp.join(ROOT, teacher[1])
            os.makedirs(osp.dirname(dst), exist_ok=True)
            shutil.copyfile(rec['checkpoint'], dst)
        rows.append((label, rec['metrics']))
        records.append(dict(name=label, method=name, seed=seed,
                            work_dir=osp.join(ROOT, work_dir), **rec))
        print(f'[{label}] done: ' + ', '.join(
            f'{k}={v:.2f}' for k, v in rec['metrics'].items()
            if k.endswith(('mean/accuracy', 'tpr@fpr1e-4', 'rank1'))),
            flush=True)

    deltas = paired_deltas(records, student)
    for rec, d in zip(records, deltas):
        rec['paired_vs_student'] = d
    columns = summary_columns([m for _, m in rows])
    table = summary_markdown(rows, columns, deltas=deltas)
    seed_table = None
    if seeds:
        groups = []
        for name, _ in jobs:
            mine = [i for i, r in enumerate(records) if r['method'] == name]
            groups.append((name, [records[i]['metrics'] for i in mine],
                           [deltas[i] for i in mine]))
        seed_table = seed_summary_markdown(groups, columns)
    caption = ('Values in %, [95% bootstrap CI]; Δ vs student: paired '
               'difference on the same test pairs, percentage points '
               '[95% CI].')
    with open(osp.join(out_dir, 'comparison.md'), 'w') as f:
        f.write(caption + '\n\n' + table + '\n')
        if seed_table:
            f.write(f'\nAcross seeds {list(seeds)}: mean ± std (ddof 1); '
                    'Δ: mean ± std of the per-seed paired differences.\n\n'
                    + seed_table + '\n')
    with open(osp.join(out_dir, 'comparison.json'), 'w') as f:
        json.dump(dict(columns=[dict(title=t, key=k) for t, k in columns],
                       rows=records, seeds=list(seeds or []),
                       student=student, seed_table=seed_table,
                       wall_time_s=time.time() - t_start), f, indent=1)
    plot(rows, columns, osp.join(out_dir, 'comparison.png'))
    print('\n' + caption + '\n\n' + table)
    if seed_table:
        print(f'\nAcross seeds {list(seeds)} (mean ± std):\n\n' + seed_table)
    print(f'\nsaved {osp.join(out_dir, "comparison.{md,json,png}")} '
          f'({(time.time() - t_start) / 60:.1f} min)')


if __name__ == '__main__':
    main()

"""Benchmark IJB template pooling + pair scoring + ROC at IJB-C size.

    python tools/analysis/benchmark_ijb.py            # full IJB-C size
    python tools/analysis/benchmark_ijb.py --scale 0.1

Synthetic features with IJB-C's shape (469,375 images x 512, 23,124
templates with several media each, 15,658,489 pairs of which 19,557 are
drawn genuine (random impostor draws of one identity add a few more);
``--scale`` shrinks all counts) are evaluated twice:

* **ours** — :mod:`mmfacekd.evaluation.functional.ijb` (one sparse matmul
  for the pooling, upper-triangle block matmuls + gathers for the pair
  scores, one value sort for the ROC);
* **loop** — insightface's ``eval_ijbc.py`` procedure, written here: for
  every template ``np.where`` over all images, then for every media
  ``np.where`` inside it; pair scores in chunks of 100,000 with a Python
  loop; the ROC with ``sklearn.metrics.roc_curve(label, score)`` (default
  ``drop_intermediate=True``), flipped, TPR at the first minimum of
  ``|fpr - target|`` (what its ``min(zip(...))`` picks).

Both must give the same TPRs (checked, exactly). The loop needs
scikit-learn (a test dependency: ``pip install -r requirements/tests.txt``);
``--skip-loop`` times ours alone. Prints both times with their parts, the
ratio and the process's peak resident memory.
"""
import argparse
import os.path as osp
import resource
import sys
import time

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))
from mmfacekd.evaluation.functional.ijb import (DEFAULT_FPRS, roc_curve,  # noqa
                                                score_pairs, template_pooling,
                                                tpr_at_fpr)

IJBC = dict(images=469_375, templates=23_124, pairs=15_658_489,
            genuine=19_557)


def make_data(scale: float, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_img = int(IJBC['images'] * scale)
    n_tmpl = int(IJBC['templates'] * scale)
    n_pairs = int(IJBC['pairs'] * scale)
    n_gen = int(IJBC['genuine'] * scale)
    n_ids = max(2, n_tmpl // 6)
    tmpl_id = np.arange(n_tmpl)
    owner = rng.integers(0, n_ids, n_tmpl)
    img_tmpl = np.r_[tmpl_id, rng.integers(0, n_tmpl, n_img - n_tmpl)]
    img_media = img_tmpl * 8 + rng.integers(0, 8, n_img)  # ~<=8 media
    centers = rng.normal(size=(n_ids, dim)).astype(np.float32)
    feats = centers[owner[img_tmpl]] * 0.12 + rng.normal(
        size=(n_img, dim)).astype(np.float32)
    scores = rng.uniform(0.5, 1.0, n_img).astype(np.float32)
    # genuine pairs: templates of one identity; impostors: random
    order = np.argsort(owner, kind='stable')
    same = order[:-1][owner[order[:-1]] == owner[order[1:]]]
    nxt = order[1:][owner[order[:-1]] == owner[order[1:]]]
    pick = rng.choice(len(same), min(n_gen, len(same)), replace=False)
    g1, g2 = same[pick], nxt[pick]
    i1 = rng.integers(0, n_tmpl, n_pairs - len(g1))
    i2 = rng.integers(0, n_tmpl, n_pairs - len(g1))
    t1, t2 = np.r_[g1, i1], np.r_[g2, i2]
    labels = (owner[t1] == owner[t2]).astype(np.int64)
    return feats, scores, img_tmpl, img_media, t1, t2, labels


def loop_reference(feats, scores, tids, mids, t1, t2, labels, fprs):
    """insightface-style loops (see the module docstring).

    Returns:
        tuple: ``{fpr: tpr}`` and the seconds of (pooling, scoring, ROC).
    """
    from sklearn.metrics import roc_curve as sklearn_roc_curve
    t0 = time.perf_counter()
    feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    feats = feats * scores[:, None]
    unique_t = np.unique(tids)
    tfeats = np.zeros((len(unique_t), feats.shape[1]), np.float32)
    for c, t in enumerate(unique_t):
        ind_t = np.where(tids == t)[0]
        f_t, m_t = feats[ind_t], mids[ind_t]
        media_feats = []
        for m in np.unique(m_t):
            ind_m = np.where(m_t == m)[0]
            media_feats.append(np.mean(f_t[ind_m], axis=0, keepdims=True))
        tfeats[c] = np.sum(np.concatenate(media_feats), axis=0)
    tfeats /= np.linalg.norm(tfeats, axis=1, keepdims=True)
    t1_ = time.perf_counter()
    index = np.zeros(unique_t.max() + 1, np.int64)
    index[unique_t] = np.arange(len(unique_t))
    sims = np.zeros(len(t1), np.float32)
    for s in range(0, len(t1), 100_000):
        a = tfeats[index[t1[s:s + 100_000]]]
        b = tfeats[index[t2[s:s + 100_000]]]
        sims[s:s + 100_000] = np.sum(a * b, -1)
    t2_ = time.perf_counter()
    fpr, tpr, _ = sklearn_roc_curve(labels, sims)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)  # ties -> largest TPR
    out = {f: float(tpr[np.argmin(np.abs(fpr - f))]) for f in fprs}
    t3_ = time.perf_counter()
    return out, (t1_ - t0, t2_ - t1_, t3_ - t2_)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--scale', type=float, default=1.0)
    parser.add_argument('--dim', type=int, default=512)
    parser.add_argument('--skip-loop', action='store_true',
                        help='time ours only')
    args = parser.parse_args()
    if not args.skip_loop:
        try:
            import sklearn  # noqa: F401
        except ImportError:
            parser.error('the loop reference needs scikit-learn (pip '
                         'install -r requirements/tests.txt); or pass '
                         '--skip-loop')
    data = make_data(args.scale, args.dim)
    feats, scores, tids, mids, t1, t2, labels = data
    print(f'{len(feats):,} images x {args.dim}, {len(np.unique(tids)):,} '
          f'templates, {len(t1):,} pairs ({labels.sum():,} genuine)')
    t0 = time.perf_counter()
    templates, tfeats = template_pooling(feats, scores, tids, mids)
    t_pool = time.perf_counter() - t0
    sims = score_pairs(templates, tfeats, t1, t2)
    t_score = time.perf_counter() - t0 - t_pool
    fpr, tpr, _ = roc_curve(sims, labels)
    ours = tpr_at_fpr(fpr, tpr, DEFAULT_FPRS)
    t_ours = time.perf_counter() - t0
    print(f'ours: {t_ours:.2f} s (pooling {t_pool:.2f}, scoring '
          f'{t_score:.2f}, ROC {t_ours - t_pool - t_score:.2f})')
    if not args.skip_loop:
        t0 = time.perf_counter()
        ref, parts = loop_reference(feats, scores, tids, mids, t1, t2,
                                    labels, DEFAULT_FPRS)
        t_loop = time.perf_counter() - t0
        same = all(ours[f] == ref[f] for f in DEFAULT_FPRS)
        print(f'loop: {t_loop:.2f} s (pooling {parts[0]:.2f}, scoring '
              f'{parts[1]:.2f}, ROC {parts[2]:.2f});  speed-up '
              f'{t_loop / t_ours:.1f}x;  same TPRs: {same}')
        if not same:
            print('loop TPR@FPR: ' + ', '.join(
                f'{f:.0e}: {v * 100:.4f}' for f, v in ref.items()))
    print('TPR@FPR: ' + ', '.join(f'{f:.0e}: {v * 100:.4f}'
                                  for f, v in ours.items()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f'peak RSS of the process (data + both runs): {peak:.0f} MiB')


if __name__ == '__main__':
    main()

"""RecordIO read + decode throughput vs plain ``cv2.imdecode`` of the same
bytes.

Measures, on one thread, images/s for
  (a) ``MXRecordDataset`` item loading: seek + read (+ split-record join) +
      IRHeader parse + JPEG decode + BGR->RGB + label check;
  (b) ``cv2.imdecode`` alone on the image bytes already in memory.
The ratio (a)/(b) is the overhead of the pure-Python RecordIO layer.

Example:
    python tools/analysis/benchmark_recordio.py data/synthetic --num 3000
"""
import argparse
import time

import cv2
import numpy as np

from mmfacekd.datasets import MXRecordDataset
from mmfacekd.utils import register_all_modules


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('data_root', help='folder with train.rec/train.idx')
    p.add_argument('--num', type=int, default=3000)
    p.add_argument('--repeat', type=int, default=3)
    args = p.parse_args()
    cv2.setNumThreads(1)
    register_all_modules()
    ds = MXRecordDataset(args.data_root,
                         pipeline=[dict(type='LoadFaceImage')])
    n = min(args.num, len(ds))
    idx = np.random.default_rng(0).permutation(len(ds))[:n]
    blobs = [ds.get_data_info(int(i))['img_bytes'] for i in idx]

    def bench(fn):
        best = float('inf')
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return n / best

    def dataset_path():
        for i in idx:
            ds[int(i)]

    def decode_only():
        for b in blobs:
            cv2.cvtColor(cv2.imdecode(np.frombuffer(b, np.uint8),
                                      cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    ours = bench(dataset_path)
    plain = bench(decode_only)
    print(f'{n} random records of {args.data_root} (1 thread, best of '
          f'{args.repeat})')
    print(f'| path | images/s |\n|---|---|\n'
          f'| MXRecordDataset (read+parse+decode+RGB) | {ours:.0f} |\n'
          f'| cv2.imdecode + RGB only (bytes in memory) | {plain:.0f} |')
    print(f'ratio dataset/imdecode = {ours / plain:.3f}')


if __name__ == '__main__':
    main()

"""Write a plain student (FaceRecognizer) checkpoint from a distiller
checkpoint.

The result loads into the student's own recognizer config (e.g.
configs/arcface/arcface_mbf_ms1mv2.py) with ``tools/test.py`` or ``load_from``;
teacher, connectors, optimizer state and loss buffers are dropped.

Example:
    python tools/misc/extract_student.py work_dirs/gkd_r50_mbf/epoch_26.pth \\
        checkpoints/gkd_mbf.pth
"""
import argparse

import torch

from mmfacekd.utils import load_checkpoint_safely


def extract_student(src: str, dst: str) -> int:
    """Copy ``student.*`` weights of ``src`` into ``dst``; return their
    count."""
    ckpt = load_checkpoint_safely(src)
    state = ckpt.get('state_dict', ckpt)
    student = {k[len('student.'):]: v for k, v in state.items()
               if k.startswith('student.')}
    if not student:
        raise SystemExit(f'{src} has no "student.*" weights; is it a '
                         'FaceDistiller checkpoint?')
    meta = dict(ckpt.get('meta', {}))
    meta = {k: meta[k] for k in ('epoch', 'iter', 'seed') if k in meta}
    meta['extracted_from'] = src
    torch.save(dict(state_dict=student, meta=meta), dst)
    return len(student)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('src', help='distiller checkpoint')
    p.add_argument('dst', help='output student checkpoint')
    args = p.parse_args()
    n = extract_student(args.src, args.dst)
    print(f'wrote {n} student tensors to {args.dst}')


if __name__ == '__main__':
    main()

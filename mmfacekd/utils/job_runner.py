"""Train-then-evaluate jobs run as subprocesses of the real tools.

Shared by ``tools/misc/run_demo.py`` and ``tools/analysis/run_comparison.py``:
each job is ``tools/train.py`` (or ``tools/dist_train.sh`` for several
processes) followed by ``tools/test.py``, with logs in the work dir, so a
comparison is exactly what a user would run by hand.

The repository root (where ``tools/`` and ``configs/`` are and where the
subprocesses run) is the caller's: the tools pass their own checkout
(``Path(__file__).resolve().parents[2]``) as ``root``; without it the current
directory is used. It is never derived from where the ``mmfacekd`` package
happens to be installed (a site-packages install has no ``tools/``).
"""
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

__all__ = ['JobFailed', 'run_logged', 'last_checkpoint', 'train_and_test']


def _root(root: Optional[str]) -> str:
    """The repository root: ``root`` if given, else the current directory."""
    return osp.abspath(root if root is not None else os.getcwd())


class JobFailed(RuntimeError):
    """A tool subprocess exited non-zero; the message ends with its log."""


def run_logged(cmd: Sequence[str], log_path: str,
               env: Optional[dict] = None,
               root: Optional[str] = None) -> None:
    """Run ``cmd`` from the repo ``root`` (default: the current directory),
    stdout+stderr into ``log_path``."""
    root = _root(root)
    print('$', ' '.join(cmd), f'  (log: {osp.relpath(log_path, root)})',
          flush=True)
    with open(log_path, 'w') as log:
        ret = subprocess.run(list(cmd), cwd=root, stdout=log,
                             stderr=subprocess.STDOUT,
                             env=dict(os.environ, **(env or {})))
    if ret.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise JobFailed(f'command failed ({ret.returncode}): '
                        f'{" ".join(cmd)}\nend of {log_path}:\n{tail}')


def last_checkpoint(work_dir: str,
                    root: Optional[str] = None) -> Optional[str]:
    """The checkpoint named in ``work_dir/last_checkpoint``, if it exists.

    A relative name is relative to the repo ``root`` (where the training
    subprocess ran; default: the current directory).
    """
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        ckpt = f.read().strip()
    if not osp.isabs(ckpt):
        ckpt = osp.join(_root(root), ckpt)
    return ckpt if osp.isfile(ckpt) else None


def _final_epoch(config: str, root: Optional[str] = None) -> Optional[int]:
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(_root(root), config))
    train_cfg = cfg.get('train_cfg', {}) or {}
    return train_cfg.get('max_epochs') if train_cfg.get('by_epoch', True) \
        else None


def _is_final(ckpt: str, final_epoch: Optional[int]) -> bool:
    """True unless ``ckpt`` is an ``epoch_N.pth`` with N < the last epoch."""
    name = osp.basename(ckpt)
    if final_epoch is None or not (name.startswith('epoch_')
                                   and name.endswith('.pth')):
        return True
    return int(name[len('epoch_'):-len('.pth')]) >= final_epoch


def _same_json(path: str, obj: dict) -> bool:
    """Whether ``path`` holds exactly ``obj`` as JSON."""
    try:
        with open(path) as f:
            return json.load(f) == json.loads(json.dumps(obj))
    except (OSError, ValueError):
        return False


def train_and_test(config: str, work_dir: str, *, retrain: bool = False,
                   train: bool = True, procs: int = 1,
                   train_args: Sequence[str] = ('--no-validate', ),
                   test_config: Optional[str] = None,
                   test_args: Sequence[str] = (),
                   name: Optional[str] = None,
                   root: Optional[str] = None,
                   teacher_cache: Optional[str] = None) -> Dict:
    """Train ``config`` into ``work_dir`` (unless done) and evaluate it.

    Args:
        config (str): Config path relative to the repo root.
        work_dir (str): Work dir of the job (created).
        retrain (bool): Train even if ``work_dir`` has a final checkpoint.
            An interrupted run (last checkpoint before the final epoch) is
            resumed.
        train (bool): False only evaluates an existing work dir (an error
            if it has no checkpoint).
        procs (int): Processes for training (``tools/dist_train.sh``).
        train_args / test_args: Extra arguments of the two tools.
        test_config (str, optional): Evaluate with this config instead of
            ``config`` (e.g. a config whose test set is the full suite).
        name (str, optional): Row name for ``tools/test.py``'s summary.
        teacher_cache (str, optional): Train reading the teacher from this
            cache (``model.teacher_cache``); ``tools/misc/cache_teacher.py``
            runs first (a no-op when the cache is complete and current).
            Its time is part of ``train_s``.
        root (str, optional): The repository root: ``config``, ``tools/``
            and relative ``work_dir``s are resolved against it and the tools
            run in it. The calling tool passes its own checkout; defaults
            to the current directory.

    Returns:
        dict: ``config``, ``checkpoint``, ``metrics``, ``train_s``,
        ``test_s``.
    """
    py = sys.executable
    root = _root(root)
    work_dir = osp.join(root, work_dir)  # unchanged if absolute
    os.makedirs(work_dir, exist_ok=True)
    ckpt = None if retrain else last_checkpoint(work_dir, root)
    resume = ckpt is not None and not _is_final(
        ckpt, _final_epoch(config, root))
    if resume:  # an interrupted run: continue it
        ckpt = None
    t0 = time.time()
    if ckpt is None:
        if not train:
            raise FileNotFoundError(
                f'{work_dir} has no finished checkpoint (last_checkpoint); '
                'train it first or drop the evaluate-only option.')
        if procs > 1:
            cmd: List[str] = ['bash', 'tools/dist_train.sh', config,
                              str(procs), '--work-dir', work_dir]
            env = dict(PYTHON=py)
        else:
            cmd, env = [py, 'tools/train.py', config, '--work-dir',
                        work_dir], None
        train_args = list(train_args)
        if teacher_cache is not None:
            run_logged([py, 'tools/misc/cache_teacher.py', config, '--out',
                        teacher_cache, '--no-progress'],
                       osp.join(work_dir, 'cache_teacher.log'), root=root)
            option = f'model.teacher_cache={teacher_cache}'
            if '--cfg-options' in train_args:  # one --cfg-options list
                train_args.insert(train_args.index('--cfg-options') + 1,
                                  option)
            else:
                train_args += ['--cfg-options', option]
        run_logged(cmd + train_args + (['--resume'] if resume else []),
                   osp.join(work_dir, 'train.log'), env, root)
        ckpt = last_checkpoint(work_dir, root)
        if ckpt is None:
            raise JobFailed(f'training {config} wrote no checkpoint in '
                            f'{work_dir}')
    t1 = time.time()
    out = osp.join(work_dir, 'eval.json')
    cmd = [py, 'tools/test.py', test_config or config, ckpt, '--work-dir',
           work_dir, '--out', out, '--no-progress']
    if name:
        cmd += ['--name', name]
    cmd += list(test_args)
    # an evaluation of this very checkpoint with this very command is reused
    stamp = osp.join(work_dir, 'eval.cmd.json')
    key = dict(cmd=cmd[1:], ckpt_mtime=osp.getmtime(osp.join(root, ckpt)))
    if retrain or not _same_json(stamp, key) or not osp.isfile(out):
        run_logged(cmd, osp.join(work_dir, 'test.log'), root=root)
        with open(stamp, 'w') as f:
            json.dump(key, f)
    with open(out) as f:
        metrics = json.load(f)['metrics']
    return dict(config=config, checkpoint=ckpt, metrics=metrics,
                train_s=t1 - t0, test_s=time.time() - t1)

"""Two "nodes" of one process each on 127.0.0.1 through tools/dist_train.sh
(NNODES=2, NODE_RANK=0/1, MASTER_ADDR, PORT): the Partial FC GKD demo trains
an epoch as one world of 2, the class shards split over the nodes and rank
0's checkpoint holds the full head."""
import glob
import os
import signal
import subprocess
import sys

from spawn_utils import free_port

from mmfacekd.utils import load_checkpoint_safely

from conftest import ROOT, TINY_IDS, tiny_model_config

CONFIG = 'configs/demo/gkd_pfc_r18_mbf_synth.py'
TIMEOUT = 150  # s per node: a rendezvous or collective never hangs the test


def test_two_nodes_train_as_one_world(tiny_synth, tmp_path):
    work_dir = tmp_path / 'w'
    cfg = tiny_model_config(CONFIG, tiny_synth, str(work_dir))
    cfg.model.teacher_ckpt = None
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint.save_best = None
    cfg.env_cfg.dist_cfg = dict(backend='nccl', timeout=60)
    path = str(tmp_path / 'cfg.py')
    cfg.dump(path)
    port = str(free_port())
    procs, logs = [], []
    try:
        for node in (0, 1):
            log = open(tmp_path / f'node{node}.log', 'w')
            logs.append(log)
            env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=ROOT,
                       NNODES='2', NODE_RANK=str(node),
                       MASTER_ADDR='127.0.0.1', PORT=port)
            procs.append(subprocess.Popen(
                ['bash', 'tools/dist_train.sh', path, '1'], cwd=ROOT,
                env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        rcs = [p.wait(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for log in logs:
            log.close()
    text = [open(tmp_path / f'node{n}.log').read() for n in (0, 1)]
    assert rcs == [0, 0], '\n'.join(t[-3000:] for t in text)
    for node in (0, 1):
        assert f'gloo process group (rank {node} of world size 2)' in \
            text[node], text[node][-3000:]
    (log, ) = glob.glob(str(work_dir / '*' / '*.log'))
    assert 'Distributed training: True' in open(log).read()
    # the 12 class centres split 6 / 6 over the nodes, gathered on rank 0
    ckpt = load_checkpoint_safely(str(work_dir / 'epoch_1.pth'))
    assert ckpt['state_dict']['student.head.weight'].shape == (TINY_IDS, 128)
    assert ckpt['meta']['iter'] > 0

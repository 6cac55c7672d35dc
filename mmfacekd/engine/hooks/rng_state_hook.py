"""Carry the global random states through checkpoints, for exact resumes."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook

from mmfacekd.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save Python's, NumPy's and torch's global RNG states in every
    checkpoint and restore them on resume.

    MMEngine re-seeds a resumed run from the config seed, so augmentations
    drawn from the global generators in the main process (mmcv's
    ``RandomFlip`` with ``num_workers=0``, dropout, anything seeded
    globally) would follow another stream than the uninterrupted run. With
    this hook (a default hook) a run killed and resumed from an epoch
    checkpoint replays the next epoch exactly
    (``tests/test_tools/test_kill_resume.py``). Data-loader workers are
    seeded by MMEngine per worker and epoch and need nothing saved. States
    are stored as plain lists/tensors (``weights_only`` loadable).
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        version, state, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint['rng_state'] = dict(
            python=[version, list(state), gauss],
            numpy=[kind, keys.tolist(), int(pos), int(has_gauss),
                   float(cached)],
            torch=torch.get_rng_state(),
            cuda=(torch.cuda.get_rng_state_all()
                  if torch.cuda.is_available() else []))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('rng_state')
        if not state or not runner._resume:
            return  # load_from (fine-tuning) keeps the new run's seed
        version, keys, gauss = state['python']
        random.setstate((version, tuple(keys), gauss))
        kind, keys, pos, has_gauss, cached = state['numpy']
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos,
                             has_gauss, cached))
        torch.set_rng_state(state['torch'])
        if state['cuda'] and torch.cuda.is_available() and \
                len(state['cuda']) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state['cuda'])

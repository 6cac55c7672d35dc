"""Make the Runner's checkpoint loading and saving safe under weights_only."""
from mmengine.hooks import Hook

from mmfacekd.registry import HOOKS
from mmfacekd.utils.checkpoint_safety import register_safe_globals


@HOOKS.register_module()
class SafeCheckpointHook(Hook):
    """Call :func:`~mmfacekd.utils.register_safe_globals` before the run.

    The Runner calls ``before_run`` before it loads or resumes a checkpoint,
    so ``load_from``/``resume`` go through ``weights_only=True`` with
    MMEngine's own types allowed, and the checkpoints the run writes hold no
    function references. The tools call the same function themselves; this
    hook covers Runners built directly from Python
    (``default_hooks.safe_checkpoint`` in
    ``configs/_base_/default_runtime.py``).
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        register_safe_globals()

"""Forward-hook recorders of intermediate module outputs, active in a block.

Like mmrazor's ``RecorderManager``: the recorders are built once, but record
only inside ``with recorders:`` — the forward hooks are registered on enter
and removed on exit, and every recorded tensor is dropped on exit. Outside
the block (validation, ``predict``, ``tensor`` mode) nothing is hooked,
cloned or kept alive.
"""
from typing import Dict, Iterator, Optional

import torch
import torch.nn as nn


class ModuleOutputRecorder:
    """Record the output of one named module while :meth:`register` ed.

    The output is **cloned** when recorded, so an in-place op applied later
    (IResNet's ``out += identity`` on a BN output, an in-place ReLU) cannot
    change the recorded value. Gradients still flow through the clone. When
    the module runs several times inside one recording block, the last call
    wins.

    Args:
        root (nn.Module): The network holding the module (student or teacher).
        module_path (str): Dotted module name inside ``root``, e.g.
            ``'backbone.layer3'``.
        network (str): Which network ``root`` is (``'student'`` or
            ``'teacher'``). Defaults to ''.
    """

    def __init__(self, root: nn.Module, module_path: str,
                 network: str = '') -> None:
        modules = dict(root.named_modules())
        if module_path not in modules:
            near = [
                n for n in modules
                if n.startswith(module_path.split('.')[0])
            ]
            raise KeyError(
                f'Recorder: no module named {module_path!r}; some available '
                f'names: {near[:12]}')
        self.module_path = module_path
        self.network = network
        self.module = modules[module_path]
        self.data: Optional[torch.Tensor] = None
        self._handle = None

    @property
    def active(self) -> bool:
        """Whether the forward hook is registered."""
        return self._handle is not None

    def _hook(self, module: nn.Module, inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            output = output.clone()
        elif isinstance(output, (tuple, list)):
            output = type(output)(o.clone() if isinstance(o, torch.Tensor)
                                  else o for o in output)
        self.data = output

    def register(self) -> None:
        """Start recording (idempotent)."""
        if self._handle is None:
            self._handle = self.module.register_forward_hook(self._hook)

    def remove(self) -> None:
        """Stop recording (idempotent); the last record is kept until reset."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def reset(self) -> None:
        self.data = None


class RecorderManager:
    """Named :class:`ModuleOutputRecorder` s that record only in a block.

    ``with manager:`` clears every record, registers the hooks, and on exit
    (also on an exception) removes the hooks and clears the records again,
    so no reference to the batch survives the block. Blocks do not nest.

    Examples:
        >>> rec = ModuleOutputRecorder(net, 'backbone.layer3')
        >>> manager = RecorderManager(dict(feat=rec))
        >>> with manager:
        ...     net(x)
        ...     feat = manager['feat'].data  # recorded output
        >>> manager['feat'].data is None
        True

    Args:
        recorders (dict): ``{name: ModuleOutputRecorder}``.
    """

    def __init__(self, recorders: Optional[Dict[str, ModuleOutputRecorder]]
                 = None) -> None:
        self.recorders: Dict[str, ModuleOutputRecorder] = dict(recorders or {})
        self._active = False

    @property
    def active(self) -> bool:
        return self._active

    def __enter__(self) -> 'RecorderManager':
        if self._active:
            raise RuntimeError(
                'RecorderManager: recording blocks do not nest.')
        self._active = True
        for rec in self.recorders.values():
            rec.reset()
            rec.register()
        return self

    def __exit__(self, *exc) -> None:
        for rec in self.recorders.values():
            rec.remove()
            rec.reset()
        self._active = False

    def data(self) -> Dict[str, torch.Tensor]:
        """``{name: recorded output}`` (None: the module did not run)."""
        return {name: rec.data for name, rec in self.recorders.items()}

    def __getitem__(self, name: str) -> ModuleOutputRecorder:
        return self.recorders[name]

    def __contains__(self, name: str) -> bool:
        return name in self.recorders

    def __iter__(self) -> Iterator[str]:
        return iter(self.recorders)

    def __len__(self) -> int:
        return len(self.recorders)

    def items(self):
        return self.recorders.items()

    def values(self):
        return self.recorders.values()


def build_recorders(networks: Dict[str, nn.Module],
                    cfg: Optional[Dict[str, dict]]) -> RecorderManager:
    """Build a :class:`RecorderManager` from
    ``{name: dict(source='student.backbone.layer3')}``."""
    recorders = {}
    for name, rcfg in (cfg or {}).items():
        source = rcfg['source'] if isinstance(rcfg, dict) else rcfg
        net, _, path = source.partition('.')
        if net not in networks:
            raise KeyError(f'Recorder {name!r}: source {source!r} must start '
                           f'with one of {sorted(networks)}')
        recorders[name] = ModuleOutputRecorder(networks[net], path, net)
    return RecorderManager(recorders)

"""Forward-hook recorders of intermediate module outputs."""
from typing import Dict, Optional

import torch
import torch.nn as nn


class ModuleOutputRecorder:
    """Record the output of one named module on every forward pass.

    The output is **cloned** when recorded, so an in-place op applied later
    (IResNet's ``out += identity`` on a BN output, an in-place ReLU) cannot
    change the recorded value. Gradients still flow through the clone.

    Args:
        root (nn.Module): The network holding the module (student or teacher).
        module_path (str): Dotted module name inside ``root``, e.g.
            ``'backbone.layer3'``.
    """

    def __init__(self, root: nn.Module, module_path: str) -> None:
        modules = dict(root.named_modules())
        if module_path not in modules:
            near = [n for n in modules if n.startswith(module_path.split('.')[0])]
            raise KeyError(
                f'Recorder: no module named {module_path!r}; some available '
                f'names: {near[:12]}')
        self.module_path = module_path
        self.data: Optional[torch.Tensor] = None
        self._handle = modules[module_path].register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            output = output.clone()
        elif isinstance(output, (tuple, list)):
            output = type(output)(o.clone() if isinstance(o, torch.Tensor)
                                  else o for o in output)
        self.data = output

    def reset(self) -> None:
        self.data = None

    def remove(self) -> None:
        self._handle.remove()


def build_recorders(networks: Dict[str, nn.Module],
                    cfg: Dict[str, dict]) -> Dict[str, ModuleOutputRecorder]:
    """Build recorders from ``{name: dict(source='student.backbone.layer3')}``."""
    recorders = {}
    for name, rcfg in (cfg or {}).items():
        source = rcfg['source'] if isinstance(rcfg, dict) else rcfg
        net, _, path = source.partition('.')
        if net not in networks:
            raise KeyError(f'Recorder {name!r}: source {source!r} must start '
                           f'with one of {sorted(networks)}')
        recorders[name] = ModuleOutputRecorder(networks[net], path)
    return recorders

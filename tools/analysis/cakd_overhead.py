"""Parameters and FLOPs of a distiller's student vs its training-time extras.

Builds the distiller of CONFIG (teacher weights are not loaded) and prints,
per image at the config's input size:

* the student as exported for inference (backbone + neck, no classifier
  head) — what ``tools/misc/extract_student.py`` keeps, minus the head;
* the extras that exist only during distillation: every connector (e.g. the
  two URFMs), every parametric distillation loss (e.g. CAKD's shared MSA)
  and the trainable teacher parameters (APT prompts; their FLOPs are the
  teacher's forward with prompts minus without them);
* for reference, the frozen teacher's forward (backbone + neck).

Classifier heads (the student's ArcFace head exists in any face training)
are left out of every row.

FLOPs are counted by MMEngine's ``FlopAnalyzer`` (fvcore's counting: one
multiply-accumulate = one FLOP; element-wise ops such as activations,
softmax, additions are not counted). Backward passes are not counted — note
that training the prompts needs a backward through the frozen teacher.

Example::

    python tools/analysis/cakd_overhead.py configs/cakd/cakd_vit_t_mbf.py
"""
import argparse
import copy
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config, DictAction

from mmfacekd.registry import MODELS
from mmfacekd.utils import register_all_modules


class _Embed(nn.Module):
    """``extract_feat`` of a FaceRecognizer as a module (for tracing)."""

    def __init__(self, recognizer: nn.Module) -> None:
        super().__init__()
        self.recognizer = recognizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.recognizer.extract_feat(x)


class _Call(nn.Module):
    """A module called with keyword arguments (for tracing)."""

    def __init__(self, module: nn.Module, names: List[str]) -> None:
        super().__init__()
        self.module, self.names = module, names

    def forward(self, *args):
        out = self.module(**dict(zip(self.names, args)))
        return out['loss'] if isinstance(out, dict) else out


def count_flops(module: nn.Module, inputs: Tuple) -> int:
    analyzer = FlopAnalyzer(module, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return int(analyzer.total())


def count_params(params) -> int:
    return sum(p.numel() for p in params)


def embedding_params(recognizer: nn.Module) -> int:
    """Parameters of a FaceRecognizer without its classifier head."""
    head = getattr(recognizer, 'head', None)
    skip = {id(p) for p in head.parameters()} if head is not None else set()
    return count_params(p for p in recognizer.parameters()
                        if id(p) not in skip)


def input_size(cfg: Config) -> int:
    pre = cfg.model.get('data_preprocessor') or {}
    return int(pre.get('resize_to') or 112)


def analyze(cfg: Config) -> Dict[str, Dict[str, Optional[int]]]:
    """Rows ``{name: dict(params=..., flops=...)}`` (see module doc)."""
    cfg = copy.deepcopy(cfg)
    cfg.model.teacher_ckpt = None
    model = MODELS.build(cfg.model).eval()
    size = input_size(cfg)
    x = torch.randn(1, 3, size, size)
    rows: Dict[str, Dict[str, Optional[int]]] = {}

    student = model.student
    rows['student (inference)'] = dict(
        params=embedding_params(student),
        flops=count_flops(_Embed(student), (x, )))

    # fill the recorders with one forward of each network
    with torch.no_grad(), model.recorders:
        values = {'student.embedding': student.extract_feat(x),
                  'teacher.embedding': model.teacher.extract_feat(x)}
        for name, rec in model.recorders.items():
            values[f'recorder.{name}'] = rec.data
        for name, conn in model.connectors.items():
            inp = values[model.connector_inputs[name]]
            values[f'connector.{name}'] = conn(inp)
            rows[f'connector {name} ({type(conn).__name__})'] = dict(
                params=count_params(conn.parameters()),
                flops=count_flops(conn, (inp, )))
    for name, loss in model.distill_losses.items():
        n_params = count_params(loss.parameters())
        mapping = model.loss_inputs[name]
        if not n_params or not all(v in values for v in mapping.values()):
            continue
        args = [values[v] for v in mapping.values()]
        rows[f'loss {name} ({type(loss).__name__})'] = dict(
            params=n_params,
            flops=count_flops(_Call(loss, list(mapping)), tuple(args)))

    teacher = model.teacher
    trainable = [(n, p) for n, p in teacher.named_parameters()
                 if p.requires_grad or 'prompt' in n]
    teacher_flops = count_flops(_Embed(teacher), (x, ))
    if trainable:
        plain_cfg = copy.deepcopy(cfg.model.teacher)
        flops = None
        if plain_cfg.backbone.get('prompt_cfg') is not None:
            plain_cfg.backbone.prompt_cfg = None
            plain = MODELS.build(plain_cfg).eval()
            flops = teacher_flops - count_flops(_Embed(plain), (x, ))
        rows['teacher prompts (APT)'] = dict(
            params=count_params(p for _, p in trainable), flops=flops)
    rows['teacher forward (frozen, reference)'] = dict(
        params=embedding_params(teacher), flops=teacher_flops)
    return rows


def format_rows(rows: Dict[str, Dict[str, Optional[int]]],
                size: int) -> str:
    def fmt(v, scale):
        return 'n/a' if v is None else f'{v / scale:.3f}'

    extras = [k for k in rows if k.startswith(('connector', 'loss', 'teacher '
                                               'prompts'))]
    lines = [f'per image at {size}x{size}; FLOPs = multiply-accumulates',
             f'{"component":<48}{"params (M)":>12}{"GFLOPs":>10}']
    student = rows['student (inference)']
    for k, v in rows.items():
        if k == 'teacher forward (frozen, reference)':
            continue
        lines.append(f'{k:<48}{fmt(v["params"], 1e6):>12}'
                     f'{fmt(v["flops"], 1e9):>10}')
    ep = sum(rows[k]['params'] for k in extras)
    ef = sum(rows[k]['flops'] or 0 for k in extras)
    lines.append(f'{"training-time extras (sum)":<48}{ep / 1e6:>12.3f}'
                 f'{ef / 1e9:>10.3f}')
    lines.append(f'{"  relative to the student":<48}'
                 f'{100 * ep / student["params"]:>11.1f}%'
                 f'{100 * ef / student["flops"]:>9.1f}%')
    t = rows['teacher forward (frozen, reference)']
    lines.append(f'{"teacher forward (frozen, reference)":<48}'
                 f'{fmt(t["params"], 1e6):>12}{fmt(t["flops"], 1e9):>10}')
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='distiller config')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, e.g. '
                        'key=value a.b=value')
    args = parser.parse_args()
    register_all_modules()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    torch.set_grad_enabled(False)
    print(args.config)
    print(format_rows(analyze(cfg), input_size(cfg)))


if __name__ == '__main__':
    main()

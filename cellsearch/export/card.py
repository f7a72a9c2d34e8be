"""The model card (Markdown) of an export, and the drawing it shows.

Every export writes ``PATH.card.md``: the cell's name, hash, equations, sizes, parameter and
multiply-add counts, the format and how to use it, and where the cell came from and what it
scored (``CardInfo.extra``: ``export_from_run`` fills it from a search run). ``draw_cell``
writes the drawing ``PATH.png`` that the card shows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

import torch

from cellsearch.dsl.graph import CellGraph
from cellsearch.export.base import version
from cellsearch.export.formats import onnx_names, yaml_weights_path
from cellsearch.export.pysource import class_name, equation_lines


class CardInfo:
    """What the card of one export shows: the cell, format, sizes, weights and extra facts."""

    def __init__(self, g: CellGraph, fmt: str, path: Path, input_size: int, hidden_size: int,
                 static_size: int | None, state: dict, seed: int, given: bool, seq_len: int, extra: dict,
                 picture: str):
        from cellsearch.dsl.tools import summary

        self.g, self.fmt, self.path = g, fmt, path
        self.input_size, self.hidden_size, self.static_size = input_size, hidden_size, static_size
        self.state, self.seed, self.given, self.seq_len = state, seed, given, seq_len
        self.extra, self.picture = extra, picture
        self.summary = summary(g, input_size, hidden_size, static_size)
        self.hash = self.summary["hash"]


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def _usage(info: CardInfo) -> list[str]:
    g, name = info.g, info.path.name
    cls = class_name(g) if len(g.inputs) == 1 else ""
    one = "," if len(g.states) == 1 else ""
    st0 = ", ".join(f"{s}_0" for s in g.states) + one
    stn = ", ".join(f"{s}_n" for s in g.states) + one
    static = ", static=(" + ", ".join(g.static) + ("," if len(g.static) == 1 else "") + ")" if g.static else ""
    if info.fmt == "py":
        mod = info.path.stem
        imp = (f"from {mod} import load  # or: from {mod} import {cls}" if mod.isidentifier() else
               f"import runpy; load = runpy.run_path({info.path.name!r})['load']  # (not an importable name)")
        return ["```python", imp,
                f"cell = load()  # the weights in {info.path.with_suffix('.pt').name}",
                f"out, ({stn}) = cell(x{static})  # x: (T, B, {info.input_size}); zero initial states",
                f"out, ({stn}) = cell(x, ({st0}){static})  # or given ones, each (B, {info.hidden_size})",
                "```"]
    if info.fmt == "torchscript":
        return ["```python", "import torch", "", f"cell = torch.jit.load({name!r})",
                f"out, ({stn}) = cell(x, ({st0}){static})  # x: (T, B, {info.input_size}); states (B, "
                f"{info.hidden_size})", "```"]
    if info.fmt == "onnx":
        ins, outs = onnx_names(g)
        feeds = ", ".join(f"{n!r}: ..." for n in ins)
        return [f"The time dimension is fixed at T = {info.seq_len}; the batch dimension is dynamic. "
                f"Inputs: {', '.join(f'`{n}`' for n in ins)}; outputs: {', '.join(f'`{n}`' for n in outs)} "
                "(states in the order above, each (B, H); `x` and `out` are (T, B, ·)).", "",
                "```python", "import onnxruntime", "",
                f"session = onnxruntime.InferenceSession({name!r})",
                f"{', '.join(outs)} = session.run(None, {{{feeds}}})", "```"]
    return ["```python", "import torch", "from cellsearch.compile import CompiledCell",
            "from cellsearch.dsl import load_cell", "", f"graph = load_cell({name!r})",
            f"cell = CompiledCell(graph, {info.input_size}, {info.hidden_size})",
            f"cell.params.load_state_dict(torch.load({yaml_weights_path(info.path).name!r}, weights_only=True))", "```"]


def render_card(info: CardInfo) -> str:
    """The model card (Markdown) of one export."""
    g, s = info.g, info.summary
    lines = [f"# {g.name}", ""]
    if g.description:
        lines += [g.description, ""]
    fmt_name = {"py": "Python module (torch only)", "torchscript": "TorchScript", "onnx": "ONNX",
                "yaml": "cellsearch YAML"}[info.fmt]
    lines += [f"- cell: `{g.name}`", f"- hash: `{info.hash}`"]
    if g.source:
        lines.append(f"- source: {g.source}")
    lines += [f"- format: {fmt_name}, `{info.path.name}`",
              f"- inputs: {', '.join(g.inputs) or '–'}" + (f"; static inputs: {', '.join(g.static)}" if g.static
                                                            else ""),
              f"- states (in this order): {', '.join(g.states)}; output: {g.output}",
              f"- sizes: input {info.input_size}, hidden {info.hidden_size}"
              + (f", static {info.static_size or info.hidden_size}" if g.static else ""),
              f"- parameters: {s['params']:,}",
              f"- multiply-adds per step and batch element: {s['multiply_adds_per_step']:,}",
              f"- exported by: cellsearch {version()}, torch {torch.__version__.split('+')[0]}"]
    if info.given:
        lines.append("- weights: supplied to the export")
    else:
        lines.append(f"- weights: untrained, initialised as cellsearch does after `torch.manual_seed({info.seed})`")
    lines.append("")
    if info.extra:
        lines += _run_section(dict(info.extra))
    lines += ["## Equations", "",
              "One step; `s_prev` is the value of state `s` at the previous step, and every `linear(...)` "
              "has weights of its own (one matrix per argument, plus a bias unless `bias=false`).", ""]
    lines += ["    " + e for e in equation_lines(g)]
    lines += ["", "## Drawing", "", f"![{g.name}]({quote(info.picture)})", ""]
    lines += ["## Parameters", "", "| name | shape |", "|---|---|"]
    lines += [f"| `{k}` | {' × '.join(str(d) for d in v.shape)} |" for k, v in info.state.items()]
    lines += ["", "## Usage", ""] + _usage(info) + [""]
    return "\n".join(lines)


def _run_section(extra: dict) -> list[str]:
    lines = ["## Search results" if extra.get("run") is not None else "## Notes", ""]
    known = ("run", "rank", "score", "status", "origin", "stage", "evaluations", "trained_params")
    labels = {"run": "run", "rank": "rank", "score": "score (higher is better)", "status": "status",
              "origin": "origin", "stage": "stage", "evaluations": "evaluations",
              "trained_params": "parameters in the search's models"}
    for k in known:
        if extra.get(k) is not None:
            v = extra[k]
            lines.append(f"- {labels[k]}: " + (f"`{v}`" if k == "run" else _fmt_value(v)))
    search = extra.get("search") or {}
    if search:
        budget = []
        if search.get("steps") is not None:
            budget.append(f"{search['steps']:,} training steps")
        if search.get("minutes") is not None:
            budget.append(f"{search['minutes']:g} minutes")
        lines += [f"- strategy: {search.get('strategy', '?')}; space: {search.get('space', '?')}"]
        if search.get("tasks") is not None:
            lines.append(f"- tasks: {', '.join(map(str, search['tasks']))}")
        if budget:
            lines.append(f"- budget per trial and task: {' or '.join(budget)}")
        if search.get("seed") is not None:
            lines.append(f"- search seed: {search['seed']} (each trial trains with a seed derived from it)")
        for k in ("trials", "reference", "name"):
            if search.get(k) is not None:
                lines.append(f"- {k}: {_fmt_value(search[k])}")
        if search.get("train"):
            lines.append(f"- training settings: {_fmt_value(search['train'])}")
    metrics = extra.get("metrics") or {}
    if metrics:
        lines += ["", "| task | metric | value |", "|---|---|---|"]
        for task, m in metrics.items():
            if isinstance(m, dict):
                for key, v in m.items():
                    lines.append(f"| {task} | {key} | {_fmt_value(v)} |")
            else:
                lines.append(f"| {task} | | {_fmt_value(m)} |")
    rest = {k: v for k, v in extra.items() if k not in (*known, "search", "metrics")}
    if rest:
        lines.append("")
        lines += [f"- {k}: {_fmt_value(v)}" for k, v in rest.items()]
    return lines + [""]


_DRAWN: dict[str, bytes] = {}


def draw_cell(g: CellGraph, path: Path) -> None:
    """``draw`` the cell to ``path`` (the same cell is drawn once per process)."""
    from cellsearch.dsl.io import dumps_cell
    from cellsearch.dsl.tools import draw

    key = dumps_cell(g, form="graph")
    if key in _DRAWN:
        path.write_bytes(_DRAWN[key])
        return
    draw(g, path)
    if len(_DRAWN) >= 64:
        _DRAWN.pop(next(iter(_DRAWN)))
    _DRAWN[key] = path.read_bytes()


__all__ = ["CardInfo", "draw_cell", "render_card"]

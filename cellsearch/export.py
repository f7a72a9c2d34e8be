"""Exporting a cell for use outside cellsearch: Python source, TorchScript, ONNX or YAML.

``export_cell(graph, fmt, path)`` writes

* ``py``: one readable Python module that needs only torch. It holds a ``torch.nn.Module``
  named after the cell (``mut1`` → ``Mut1Cell``) with the ``torch.nn.LSTM`` calling convention
  (``out, state = cell(x, state)``), a ``step`` method written equation by equation, and a
  ``load()`` function that returns the cell with the exported weights, which are saved beside
  the module (``PATH`` with suffix ``.pt``, a plain state dict). The source is TorchScript-clean.
* ``torchscript``: that module compiled with ``torch.jit.script``, weights included; it loads
  with ``torch.jit.load`` in any process that has torch.
* ``onnx``: the layer unrolled over a fixed sequence length ``seq_len`` (the time dimension is
  fixed, the batch dimension is dynamic). Inputs ``x`` (T, B, I), ``<state>_0`` (B, H) per state
  (and ``static_<name>`` (B, S) per static input); outputs ``out`` (T, B, H) and ``<state>_n``
  per final state. The file is checked with ``onnx.checker`` and run once in onnxruntime.
* ``yaml``: the cell in the DSL, with the weights beside it (``PATH`` with suffix ``.weights.pt``).

Every export also writes a model card ``PATH.card.md`` (name, hash, equations, sizes,
parameter and multiply-add counts, where the cell came from and what it scored) and a drawing
``PATH.png`` that the card shows. Every artifact that runs (py, torchscript, onnx) is compared
with ``CompiledCell`` on a random input before the export returns.

Parameters keep cellsearch's names (``<node>__w<k>``, ``<node>__b``, ``<node>__p``, see
``cellsearch.compile.params``), so ``CompiledCell(...).params.state_dict()`` loads into the
exported module as it is.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib.util
import io
import json
import keyword
import math
import re
import sys
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

import torch

from cellsearch.compile.params import CellParameters, bias_name, scale_name, weight_name
from cellsearch.dsl.equations import format_equation, format_number, inlined_nodes
from cellsearch.dsl.graph import CellGraph
from cellsearch.errors import CellsearchError, ConfigError

FORMATS = ("py", "torchscript", "onnx", "yaml")
CHECK_TOLERANCE = 1e-4  # how close an exported artifact must follow CompiledCell (absolute and relative)
ONNX_OPSET = 17


class ExportError(CellsearchError):
    """An export could not be written, or the written artifact does not compute the cell."""


# ====================================================================== public API
def export_cell(graph: CellGraph | str, fmt: str, path: str | Path, *, input_size: int = 128,
                hidden_size: int = 128, weights: Mapping[str, torch.Tensor] | None = None, seed: int = 0,
                seq_len: int = 16, card: dict | None = None, static_size: int | None = None) -> list[Path]:
    """Write ``graph`` (a CellGraph, a built-in name or a YAML path) as ``fmt`` to ``path``.

    ``weights`` is a state dict with ``CellParameters`` names (``CompiledCell(...).params.state_dict()``;
    a ``CompiledCell.state_dict()`` with its ``params.`` prefix works too); without it the
    parameters are initialised as ``CellParameters`` does after ``torch.manual_seed(seed)``.
    ``seq_len`` is the fixed sequence length of the ONNX graph (and of the self-check).
    ``card`` adds facts to the model card (``export_from_run`` fills it from a search run).
    Returns the files written: the artifact first, then the weights (py, yaml), the card and
    the drawing.
    """
    from cellsearch.library import resolve_cell

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
    for what, value in (("input size", input_size), ("hidden size", hidden_size), ("sequence length", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"the {what} must be a positive integer, not {value!r}")
    g = resolve_cell(graph)
    g.validate(warn=False)
    if not g.static:
        static_size = None
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ConfigError(f"cannot export to '{path}': it is a directory (give a file name)")
    if fmt != "yaml":
        _check_exportable(g)
    if fmt == "py" and path.suffix != ".py":
        raise ConfigError(f"a Python export needs a file name ending in .py, not '{path.name}'")
    params = _parameters(g, input_size, hidden_size, static_size, weights, seed)
    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in params.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Path(str(path) + ".png")
    card_path = Path(str(path) + ".card.md")
    info = _CardInfo(g, fmt, path, input_size, hidden_size, static_size, state, seed,
                     weights is not None, seq_len, card or {}, picture.name)
    card_text = render_card(info)

    written = [path]
    if fmt == "py":
        sidecar = path.with_suffix(".pt")
        source = python_source(g, input_size, hidden_size, static_size, card=card_text, weights_file=sidecar.name)
        path.write_text(source, encoding="utf-8")
        torch.save(state, sidecar)
        _check_python(g, path, params, seq_len)
        written.append(sidecar)
    elif fmt == "torchscript":
        _write_torchscript(g, path, params, state, card_text, seq_len)
    elif fmt == "onnx":
        _write_onnx(g, path, params, state, card_text, seq_len)
    else:
        from cellsearch.dsl.io import dumps_cell

        sidecar = yaml_weights_path(path)
        header = (f"# {g.name} (hash {info.hash}), exported by cellsearch {version()}.\n"
                  f"# Weights (I={input_size}, H={hidden_size}): {sidecar.name}; model card: {card_path.name}\n")
        path.write_text(header + dumps_cell(g), encoding="utf-8")
        torch.save(state, sidecar)
        written.append(sidecar)
    card_path.write_text(card_text, encoding="utf-8")
    _draw(g, picture)
    written += [card_path, picture]
    return written


def export_from_run(run_dir: str | Path, rank: int, fmt: str, path: str | Path, **kw: Any) -> list[Path]:
    """Export the cell ranked ``rank`` (1 = best) on the leaderboard of a search run.

    The model card records the run, the cell's rank, score and per-task metrics, and the
    search settings from the run's ``config.json`` (strategy, space, tasks, budget, seed).
    A search keeps no trained weights: unless ``weights`` is given, they are freshly initialised.
    Other keywords go to ``export_cell``.
    """

    from cellsearch.dsl.io import loads_cell
    from cellsearch.runner.search import leaderboard

    from cellsearch.rundir import CONFIG, read_json_file, require_run

    run = require_run(run_dir)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"--rank must be 1 (the best cell) or more, not {rank!r}")
    if fmt not in FORMATS:  # before reading the run: the cheap mistake first
        raise ConfigError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
    rows = leaderboard(run, rank)
    if len(rows) < rank:
        raise ConfigError(f"rank {rank} is out of range: '{run}' has {len(rows)} ranked cell(s)")
    row = rows[rank - 1]
    graph = loads_cell(row["cell_yaml"], source=f"{run}/results.db (rank {rank})", warn=False)
    config = read_json_file(run / CONFIG, "search settings", "restore it, or export the cell with "
                            "`cellsearch export CELL.yaml`")
    search = {k: config[k] for k in ("name", "strategy", "space", "tasks", "trials", "steps", "minutes", "seed",
                                     "reference", "train") if k in config}
    card = {"run": str(run), "rank": rank, "score": row["score"], "status": row["status"],
            "origin": row.get("origin"), "stage": row.get("stage"), "evaluations": row.get("evaluations"),
            "trained_params": row.get("params"), "metrics": row["metrics"], "search": search}
    extra = kw.pop("card", None) or {}
    return export_cell(graph, fmt, path, card={**card, **extra}, **kw)


def yaml_weights_path(path: str | Path) -> Path:
    """Where a YAML export keeps its weights: ``cell.yaml`` → ``cell.weights.pt``.

    (Not ``cell.pt`` like the py export, so that a YAML and a TorchScript export of one name
    can sit side by side.)
    """
    return Path(path).with_suffix(".weights.pt")


def version() -> str:
    """cellsearch's version (``cellsearch.__version__``, else the installed distribution's)."""
    import cellsearch

    v = getattr(cellsearch, "__version__", None)
    if v:
        return str(v)
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        return dist_version("cellsearch")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0+unknown"


def class_name(graph: CellGraph) -> str:
    """The exported module's class: the cell's name in CamelCase plus ``Cell`` (``lstm-b`` → ``LstmBCell``)."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", graph.name) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts)
    if name.lower().endswith("cell"):
        name = name[:-4]
    if not name:
        return "ExportedCell"
    if name[0].isdigit():
        name = "C" + name
    return name + "Cell"


# ====================================================================== parameters
def _check_exportable(g: CellGraph) -> None:
    if len(g.inputs) != 1:
        have = f"{len(g.inputs)} ({', '.join(g.inputs)})" if g.inputs else "none"
        raise ExportError(f"export supports one per-step input; cell '{g.name}' has {have} "
                          "(export it as yaml, or concatenate the inputs into one)")


def _parameters(g: CellGraph, input_size: int, hidden_size: int, static_size: int | None,
                weights: Mapping[str, torch.Tensor] | None, seed: int) -> CellParameters:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        params = CellParameters(g, input_size, hidden_size, static_size)
    if weights is None:
        return params
    if not isinstance(weights, Mapping):
        raise ConfigError(f"weights must be a state dict (name → tensor), not {type(weights).__name__}")
    weights = dict(weights)
    if weights and all(k.startswith("params.") for k in weights):  # CompiledCell.state_dict()
        weights = {k[len("params."):]: v for k, v in weights.items()}
    expected = params.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))
        if unexpected:
            parts.append("unexpected " + ", ".join(unexpected[:6]) + (" ..." if len(unexpected) > 6 else ""))
        raise ConfigError(f"the weights do not fit cell '{g.name}': {'; '.join(parts)}")
    for k, v in expected.items():
        w = weights[k]
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != tuple(v.shape):
            got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ConfigError(f"weight '{k}' of cell '{g.name}' has shape {got}, expected {tuple(v.shape)} "
                              f"(I={input_size}, H={hidden_size})")
    with torch.no_grad():
        for k, v in params.named_parameters():
            v.copy_(weights[k].detach().to(v.dtype))
    return params


# ====================================================================== Python source
_PY_RESERVED = (set(keyword.kwlist) | set(dir(builtins))
                | {"self", "torch", "F", "nn", "Tensor", "Optional", "Tuple", "List", "math", "Path"})
_FORWARD_LOCALS = {"x", "state", "static", "zeros", "outs", "x_t", "out"}


class _Names:
    """Python identifiers for the cell's names: a name is kept unless it is reserved or taken."""

    def __init__(self, reserved: set[str]):
        self.reserved = reserved
        self.used: set[str] = set()
        self.names: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self.names:
            var = name
            while var in self.reserved or var in self.used:
                var += "_"
            self.used.add(var)
            self.names[name] = var
        return self.names[name]


def _docstring(text: str, indent: str = "") -> str:
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').rstrip("\n")
    body = "\n".join((indent + line) if line.strip() else "" for line in body.split("\n"))
    return f'{indent}"""{body.lstrip()}\n{indent}"""'


class _PyWriter:
    """Writes the ``step`` body: one line per equation, linear as one ``F.linear`` per argument."""

    def __init__(self, g: CellGraph):
        self.g = g
        inline = set(inlined_nodes(g))
        # blend(z, a, b) reads z twice (z * a + (1 - z) * b): give z a line of its own
        for n in g.nodes:
            if n.op == "blend" and n.args and g.node_map.get(n.args[0]) is not None \
                    and g.node_map[n.args[0]].op != "const":
                inline.discard(n.args[0])
        self.inline = inline
        self.names = _Names(_PY_RESERVED)
        for leaf in g.leaf_kinds:
            self.names[leaf]

    def ref(self, name: str) -> tuple[str, int]:
        node = self.g.node_map.get(name)
        if node is None:
            return self.names[name], 9
        if node.op == "const":
            v = node.attr("value")
            return (format_number(v), 9) if v >= 0 else (f"({format_number(v)})", 9)
        if name in self.inline:
            return self.expr(name)
        return self.names[name], 9

    def expr(self, name: str) -> tuple[str, int]:
        """Python text of node ``name`` and its precedence (1: + -, 2: *, 3: unary -, 9: atom)."""
        node = self.g.node_map[name]
        op = node.op
        args = [self.ref(a) for a in node.args]
        if op == "linear":
            terms = [f"F.linear({t}, self.{weight_name(name, k)})" for k, (t, _) in enumerate(args)]
            if node.attr("bias"):
                terms.append(f"self.{bias_name(name)}")
            return " + ".join(terms), (9 if len(terms) == 1 else 1)
        if op in ("add", "sub", "mul"):
            p = 1 if op != "mul" else 2
            sym = {"add": "+", "sub": "-", "mul": "*"}[op]
            (lt, lp), (rt, rp) = args
            return f"{_paren(lt, lp < p)} {sym} {_paren(rt, rp <= p)}", p
        if op == "neg":
            t, p = args[0]
            return "-" + _paren(t, p <= 3), 3
        if op == "one_minus":
            t, p = args[0]
            return f"1 - {_paren(t, p <= 1)}", 1
        if op == "blend":
            (zt, zp), (at, ap), (bt, bp) = args
            return (f"{_paren(zt, zp < 2)} * {_paren(at, ap <= 2)} + (1 - {_paren(zt, zp <= 1)}) * "
                    f"{_paren(bt, bp <= 2)}"), 1
        if op == "diag":
            t, p = args[0]
            return f"self.{scale_name(name)} * {_paren(t, p <= 2)}", 2
        if op in ("tanh", "sigmoid", "relu"):
            return f"torch.{op}({args[0][0]})", 9
        if op == "leaky_relu":
            return f"F.leaky_relu({args[0][0]}, {float(node.attr('slope'))!r})", 9
        if op == "identity":
            return args[0]
        raise ExportError(f"cannot export op '{op}' of node '{name}'")  # pragma: no cover - op table moved

    def step_lines(self) -> list[str]:
        g = self.g
        lines = []
        for name in g.order:
            node = g.node_map[name]
            if name not in g.live or name in self.inline or node.op == "const":
                continue
            lines.append(f"# {name} = {format_equation(g, name, self.inline)}")
            lines.append(f"{self.names[name]} = {self.expr(name)[0]}")
        return lines


def _paren(text: str, needed: bool) -> str:
    return f"({text})" if needed else text


def _size_expr(g: CellGraph, leaf: str) -> str:
    kind = g.leaf_kinds.get(leaf)
    return {"input": "input_size", "static": "static_size"}.get(kind, "hidden_size")


def python_source(graph: CellGraph, input_size: int, hidden_size: int, static_size: int | None = None, *,
                  card: str = "", weights_file: str | None = None) -> str:
    """The standalone, TorchScript-compatible Python module of a cell (see the module docstring)."""
    from cellsearch.dsl.hashing import canonical_hash

    g = graph
    _check_exportable(g)
    cls = class_name(g)
    w = _PyWriter(g)
    names = w.names
    fwd = _Names(_PY_RESERVED | _FORWARD_LOCALS)
    static_vars = [fwd[s] for s in g.static]
    state_vars = [fwd[s] for s in g.states]
    n_states = len(g.states)
    state_t = f"Tuple[{', '.join(['Tensor'] * n_states)}]"
    static_t = f"Tuple[{', '.join(['Tensor'] * len(g.static))}]" if g.static else ""
    equations = _equation_lines(g)
    elementwise = _elementwise_leaves(g)

    out: list[str] = []
    emit = out.append
    header = card.strip() or f"{g.name}: a recurrent cell exported by cellsearch."
    emit(_docstring(header + "\n"))
    emit("")
    emit(f"# Generated by cellsearch {version()} (`cellsearch export`). It needs only PyTorch: edit freely.")
    emit("")
    emit("import math")
    emit("from pathlib import Path")
    emit("from typing import List, Optional, Tuple")
    emit("")
    emit("import torch")
    emit("import torch.nn.functional as F")
    emit("from torch import Tensor, nn")
    emit("")
    emit(f"CELL_NAME = {g.name!r}")
    emit(f"CELL_HASH = {canonical_hash(g)!r}  # cellsearch's structural hash")
    emit(f"STATES = {tuple(g.states)!r}  # the order of the state tuple")
    emit(f"OUTPUT = {g.output!r}  # the state returned at every step")
    emit(f"INPUT_SIZE = {input_size}  # sizes of the exported weights (see load())")
    emit(f"HIDDEN_SIZE = {hidden_size}")
    if g.static:
        emit(f"STATIC_SIZE = {static_size if static_size is not None else hidden_size}")
    emit(f"WEIGHTS = {weights_file!r}  # the weights, next to this file")
    emit("")
    emit("")
    emit(f"class {cls}(nn.Module):")
    doc = [f"The {_title(g)} as a layer with the torch.nn.LSTM calling convention.", ""]
    if g.description:
        doc += [g.description, ""]
    doc += ["One step (``s_prev`` is state ``s`` of the previous step; every ``linear`` has weights of its own):",
            ""] + ["    " + e for e in equations] + [""]
    state_doc = ", ".join(g.states) + ("," if n_states == 1 else "")
    doc += [f"``out, state = cell(x, state{', static' if g.static else ''})``:", "",
            "* ``x``: (T, B, input_size), or (B, T, input_size) with ``batch_first=True``;",
            f"* ``state``: the tuple ({state_doc}) of (B, hidden_size) tensors; zeros when omitted;"]
    if g.static:
        doc.append(f"* ``static``: the tuple ({', '.join(g.static)}{',' if len(g.static) == 1 else ''}) "
                   "of (B, static_size) tensors, constant over the sequence (required);")
    doc += [f"* ``out``: the output state ``{g.output}`` at every step, (T, B, hidden_size) "
            "(batch first with ``batch_first=True``);",
            "* the returned ``state``: the final states, in the same order.", "",
            "Parameters keep cellsearch's names: ``<node>__w<k>`` is the weight a linear node applies to its",
            "k-th argument (shape (hidden_size, size of the argument)), ``<node>__b`` its bias and",
            "``<node>__p`` the scale of a diag node. The module docstring holds the model card."]
    emit(_docstring("\n".join(doc) + "\n", "    "))
    emit("")
    init_args = "self, input_size: int, hidden_size: int, batch_first: bool = False"
    if g.static:
        init_args += ", static_size: Optional[int] = None"
    emit(f"    def __init__({init_args}):")
    emit("        super().__init__()")
    if g.static:
        emit("        if static_size is None:")
        emit("            static_size = hidden_size")
    for leaf in elementwise:
        kind = g.leaf_kinds[leaf]
        size = "input_size" if kind == "input" else "static_size"
        emit(f"        if {size} != hidden_size:")
        emit(f"            raise ValueError(\"{g.name} uses the {kind} input '{leaf}' elementwise: \"")
        emit(f"                             \"{size} must equal hidden_size\")")
    emit("        self.input_size = input_size")
    emit("        self.hidden_size = hidden_size")
    if g.static:
        emit("        self.static_size = static_size")
    emit("        self.batch_first = batch_first")
    inline_eq = inlined_nodes(g)
    for n in g.nodes:
        if n.name not in g.live or n.op not in ("linear", "diag"):
            continue
        owner = g.written_node(n.name)
        emit(f"        # {n.name} = {format_equation(g, n.name, inline_eq)}"
             + ("" if owner == n.name else f"  (in the equation of {owner})"))
        if n.op == "linear":
            for k, a in enumerate(n.args):
                emit(f"        self.{weight_name(n.name, k)} = nn.Parameter(torch.empty(hidden_size, "
                     f"{_size_expr(g, a)}))  # for {a}")
            if n.attr("bias"):
                emit(f"        self.{bias_name(n.name)} = nn.Parameter(torch.empty(hidden_size))")
        else:
            emit(f"        self.{scale_name(n.name)} = nn.Parameter(torch.empty(hidden_size))")
    emit("        self.reset_parameters()")
    emit("")
    emit("    def reset_parameters(self, init_scale: float = 1.0) -> None:")
    emit('        """Uniform(±init_scale/√hidden_size) like torch\'s RNNs, then the cell\'s own initial values."""')
    emit("        bound = init_scale / math.sqrt(self.hidden_size)")
    emit("        with torch.no_grad():")
    emit("            for p in self.parameters():")
    emit("                p.uniform_(-bound, bound)")
    for n in g.nodes:
        if n.name not in g.live:
            continue
        if n.op == "linear":
            if n.attr("bias") and n.attr("bias_init") is not None:
                emit(f"            self.{bias_name(n.name)}.fill_({float(n.attr('bias_init'))!r})  # bias_init")
            a = n.attr("diag_init")
            if a is not None:
                for k in range(len(n.args)):
                    emit(f"            self.{weight_name(n.name, k)}.mul_(0.1).diagonal().add_({float(a)!r})"
                         "  # diag_init")
        elif n.op == "diag" and n.attr("init") is not None:
            emit(f"            self.{scale_name(n.name)}.fill_({float(n.attr('init'))!r})  # init")
    emit("")
    step_args = ", ".join(f"{names[leaf]}: Tensor" for leaf in (*g.inputs, *g.static, *g.prev_names))
    step_ret = "Tensor" if n_states == 1 else state_t
    emit(f"    def step(self, {step_args}) -> {step_ret}:")
    emit(f'        """One time step: the new ({state_doc}) from the inputs and the previous states."""')
    for line in w.step_lines():
        emit("        " + line)
    emit(f"        return {', '.join(names[s] for s in g.states)}")
    emit("")
    fwd_args = f"self, x: Tensor, state: Optional[{state_t}] = None"
    if g.static:
        fwd_args += f", static: Optional[{static_t}] = None"
    emit(f"    def forward({fwd_args}) -> Tuple[Tensor, {state_t}]:")
    emit(f'        """``out, state = cell(x, state{", static" if g.static else ""})``; see the class docstring."""')
    emit("        if x.dim() != 3:")
    emit("            raise ValueError(\"expected x of shape (T, B, input_size) (or (B, T, input_size) \"")
    emit("                             \"with batch_first=True)\")")
    emit("        if self.batch_first:")
    emit("            x = x.transpose(0, 1)")
    emit("        if x.shape[2] != self.input_size:")
    emit("            raise ValueError(\"the last dimension of x must be input_size\")")
    svars = ", ".join(state_vars)
    emit("        if state is None:")
    emit("            zeros = torch.zeros(x.shape[1], self.hidden_size, dtype=x.dtype, device=x.device)")
    emit(f"            {svars} = {', '.join(['zeros'] * n_states)}")
    emit("        else:")
    if n_states == 1:
        emit(f"            {state_vars[0]} = state[0]")
    else:
        emit(f"            {svars} = state")
    if g.static:
        emit("        if static is None:")
        emit(f"            raise ValueError(\"{g.name} needs its static input(s) "
             f"{', '.join(g.static)}: pass static=(...)\")")
        for i, v in enumerate(static_vars):
            emit(f"        {v} = static[{i}]")
    emit("        outs: List[Tensor] = []")
    emit("        for x_t in x.unbind(0):")
    call = ", ".join(["x_t", *static_vars, *state_vars])
    emit(f"            {svars} = self.step({call})")
    emit(f"            outs.append({fwd[g.output]})")
    emit("        out = torch.stack(outs)")
    emit("        if self.batch_first:")
    emit("            out = out.transpose(0, 1)")
    emit(f"        return out, ({svars}{',' if n_states == 1 else ''})")
    emit("")
    emit("")
    emit(f"def load(weights_path: Optional[str] = None, batch_first: bool = False, "
         f"map_location: str = \"cpu\") -> {cls}:")
    emit(f'    """The {_title(g)} with the exported weights (default: WEIGHTS next to this file), in eval mode."""')
    emit("    path = Path(weights_path) if weights_path is not None else Path(__file__).with_name(WEIGHTS)")
    emit("    state_dict = torch.load(path, map_location=map_location, weights_only=True)")
    extra = ", static_size=STATIC_SIZE" if g.static else ""
    emit(f"    model = {cls}(INPUT_SIZE, HIDDEN_SIZE, batch_first=batch_first{extra})")
    emit("    model.load_state_dict(state_dict)")
    emit("    return model.eval()")
    return "\n".join(out) + "\n"


def _title(g: CellGraph) -> str:
    return g.name if g.name.lower().endswith("cell") else f"{g.name} cell"


def _equation_lines(g: CellGraph) -> list[str]:
    inline = inlined_nodes(g)
    return [f"{n.name} = {format_equation(g, n.name, inline)}" + ("" if n.name in g.live else "  (unused)")
            for n in g.nodes if n.name not in inline]


def _elementwise_leaves(g: CellGraph) -> list[str]:
    """Inputs and static inputs used directly by a non-linear node (their size must be hidden_size)."""
    out: list[str] = []
    for n in g.nodes:
        if n.op == "linear":
            continue
        for a in n.args:
            if g.leaf_kinds.get(a) in ("input", "static") and a not in out:
                out.append(a)
    return out


# ====================================================================== loading and checking
@contextlib.contextmanager
def _imported(path: Path):
    """Import a generated module from its file (TorchScript reads the source through ``inspect``)."""
    name = f"_cellsearch_export_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # leave no __pycache__ beside the user's file
    try:
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # pragma: no cover - a bug in the generator
            raise ExportError(f"the generated module {path} does not import: {type(exc).__name__}: {exc}") from None
        yield module
    finally:
        sys.dont_write_bytecode = dont_write
        sys.modules.pop(name, None)


def _instance(g: CellGraph, module, params: CellParameters, state: dict) -> torch.nn.Module:
    cls = getattr(module, class_name(g))
    kw = {"static_size": params.static_size} if g.static else {}
    model = cls(params.input_size, params.hidden_size, **kw)
    model.load_state_dict(state)
    return model.eval()


def _example(g: CellGraph, params: CellParameters, T: int, B: int, seed: int = 1234):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, params.input_size, generator=gen)
    states = tuple(torch.randn(B, params.hidden_size, generator=gen) * 0.5 for _ in g.states)
    statics = tuple(torch.randn(B, params.static_size, generator=gen) for _ in g.static)
    return x, states, statics


def _reference(g: CellGraph, params: CellParameters, x, states, statics):
    from cellsearch.compile.sequence import CompiledCell

    with torch.no_grad():
        out, final = CompiledCell(g, params.input_size, params.hidden_size,
                                  params.static_size if g.static else None, params=params)(x, states, statics)
    return [out, *final]


def _compare(what: str, got, expected) -> None:
    for name, a, b in zip(["out", *("final state " + str(i) for i in range(len(expected) - 1))], got, expected):
        a = torch.as_tensor(a)
        if tuple(a.shape) != tuple(b.shape) or not torch.allclose(a, b, rtol=CHECK_TOLERANCE, atol=CHECK_TOLERANCE):
            diff = (a - b).abs().max().item() if a.shape == b.shape else f"shape {tuple(a.shape)} ≠ {tuple(b.shape)}"
            raise ExportError(f"{what} does not match the compiled cell ({name}: max difference {diff})")


def _run_module(g: CellGraph, model, x, states, statics):
    with torch.no_grad():
        out, final = model(x, states, statics) if g.static else model(x, states)
    return [out, *final]


def _check_python(g: CellGraph, path: Path, params: CellParameters, seq_len: int) -> None:
    x, states, statics = _example(g, params, min(seq_len, 8), 2)
    expected = _reference(g, params, x, states, statics)
    with _imported(path) as module:
        model = module.load()
        _compare(f"the exported module {path}", _run_module(g, model, x, states, statics), expected)


def _scripted(g: CellGraph, params: CellParameters, state: dict, card_text: str):
    with tempfile.TemporaryDirectory(prefix="cellsearch-export-") as tmp:
        src = Path(tmp) / "cell.py"
        src.write_text(python_source(g, params.input_size, params.hidden_size,
                                     params.static_size if g.static else None, card=card_text,
                                     weights_file=None), encoding="utf-8")
        with _imported(src) as module:
            model = _instance(g, module, params, state)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    return torch.jit.script(model), model
                except Exception as exc:  # pragma: no cover - a bug in the generator
                    raise ExportError(f"torch.jit.script failed on the generated module of '{g.name}': "
                                      f"{type(exc).__name__}: {exc}") from None


def _write_torchscript(g: CellGraph, path: Path, params: CellParameters, state: dict, card_text: str,
                       seq_len: int) -> None:
    scripted, _ = _scripted(g, params, state, card_text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted.save(str(path), _extra_files={"model_card.md": card_text})
        loaded = torch.jit.load(str(path))
    x, states, statics = _example(g, params, min(seq_len, 8), 2)
    _compare(f"the TorchScript file {path}", _run_module(g, loaded, x, states, statics),
             _reference(g, params, x, states, statics))


class _OnnxLayer(torch.nn.Module):
    """Flat signature for ONNX: ``(x, *states, *statics) -> (out, *final_states)``."""

    def __init__(self, cell: torch.nn.Module, n_states: int, has_static: bool):
        super().__init__()
        self.cell = cell
        self.n_states = n_states
        self.has_static = has_static

    def forward(self, x, *rest):
        states = tuple(rest[:self.n_states])
        if self.has_static:
            out, final = self.cell(x, states, tuple(rest[self.n_states:]))
        else:
            out, final = self.cell(x, states)
        return (out, *final)


def onnx_names(g: CellGraph) -> tuple[list[str], list[str]]:
    """Input and output names of the ONNX graph."""
    inputs = ["x", *(f"{s}_0" for s in g.states), *(f"static_{s}" for s in g.static)]
    outputs = ["out", *(f"{s}_n" for s in g.states)]
    return inputs, outputs


def _write_onnx(g: CellGraph, path: Path, params: CellParameters, state: dict, card_text: str,
                seq_len: int) -> None:
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as exc:
        raise ExportError(f"ONNX export needs onnx and onnxruntime ({exc.name} is missing): "
                          "pip install 'cellsearch[export]'") from None
    from cellsearch.dsl.hashing import canonical_hash

    with tempfile.TemporaryDirectory(prefix="cellsearch-export-") as tmp:
        src = Path(tmp) / "cell.py"
        src.write_text(python_source(g, params.input_size, params.hidden_size,
                                     params.static_size if g.static else None, weights_file=None),
                       encoding="utf-8")
        with _imported(src) as module:
            layer = _OnnxLayer(_instance(g, module, params, state), len(g.states), bool(g.static)).eval()
            x, states, statics = _example(g, params, seq_len, 2)
            in_names, out_names = onnx_names(g)
            axes = {"x": {1: "batch"}, "out": {1: "batch"}}
            axes.update({n: {0: "batch"} for n in in_names[1:] + out_names[1:]})
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                try:
                    torch.onnx.export(layer, (x, *states, *statics), str(path), dynamo=False,
                                      input_names=in_names, output_names=out_names, dynamic_axes=axes,
                                      opset_version=ONNX_OPSET, do_constant_folding=True)
                except Exception as exc:  # pragma: no cover - depends on the torch version
                    raise ExportError(f"torch.onnx.export failed for '{g.name}': {type(exc).__name__}: {exc}") \
                        from None
    model = onnx.load(str(path))
    meta = {"cellsearch_cell": g.name, "cellsearch_hash": canonical_hash(g), "cellsearch_version": version(),
            "sequence_length": str(seq_len), "states": ",".join(g.states), "model_card": card_text}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.doc_string = f"{g.name}: recurrent layer over a fixed sequence length T={seq_len}; batch is dynamic."
    onnx.save(model, str(path))
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:  # pragma: no cover - depends on the exporter
        raise ExportError(f"the ONNX file {path} does not pass onnx.checker: {exc}") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x, states, statics = _example(g, params, seq_len, 3, seed=4321)  # another batch size than exported
    feeds = dict(zip(in_names, [t.numpy() for t in (x, *states, *statics)]))
    present = {i.name for i in session.get_inputs()}
    got = session.run(out_names, {k: v for k, v in feeds.items() if k in present})
    _compare(f"the ONNX file {path} (in onnxruntime)", [torch.from_numpy(a) for a in got],
             _reference(g, params, x, states, statics))


# ====================================================================== model card and drawing
class _CardInfo:
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


def _usage(info: _CardInfo) -> list[str]:
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


def render_card(info: _CardInfo) -> str:
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
    lines += ["    " + e for e in _equation_lines(g)]
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


def _draw(g: CellGraph, path: Path) -> None:
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


__all__ = ["FORMATS", "ExportError", "class_name", "export_cell", "export_from_run", "onnx_names",
           "python_source", "render_card", "version", "yaml_weights_path"]

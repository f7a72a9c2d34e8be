"""Python source generation: the standalone, torch-only module of a cell, and importing it back.

``python_source`` writes one readable module that needs only torch: a ``torch.nn.Module``
named after the cell (``mut1`` → ``Mut1Cell``, see ``class_name``) with the ``torch.nn.LSTM``
calling convention (``out, state = cell(x, state)``), a ``step`` method written equation by
equation (one ``F.linear`` per linear argument, unlike the compiler's fused matmuls, so that it
reads like the cell), and a ``load()`` function that returns the cell with the weights saved
beside the module. The source is TorchScript-clean; the TorchScript and ONNX formats are built
from it (``formats.py``), after ``imported`` loads it back from its file.

Variables come from ``cellsearch.dsl.names.Names``, the compiler's allocator: a cell name is
kept unless it is reserved (keywords, builtins, what the module itself uses) or taken.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import sys
import uuid
from pathlib import Path

import torch

from cellsearch.compile.memory import DEFAULT_MEMORY_ROWS, starts_empty
from cellsearch.compile.params import CellParameters
from cellsearch.dsl.equations import format_equation, format_number, inlined_nodes
from cellsearch.dsl import literals
from cellsearch.dsl.graph import CellGraph
from cellsearch.dsl.names import PYTHON_RESERVED, Names
from cellsearch.export.base import ExportError, version
from cellsearch.ops.registry import OPS, preludes

_PY_RESERVED = PYTHON_RESERVED | {"self", "torch", "F", "nn", "Tensor", "Optional", "Tuple", "List", "math", "Path"}
_FORWARD_LOCALS = {"x", "state", "static", "memory", "memory_mask", "zeros", "outs", "x_t", "out"}


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


def check_exportable(g: CellGraph) -> None:
    """Raise CellError unless ``g`` is valid (its name and text included: they reach the module's
    source) and ExportError unless the Python module can express it (one per-step input)."""
    g.validate(warn=False)
    if len(g.inputs) != 1:
        have = f"{len(g.inputs)} ({', '.join(g.inputs)})" if g.inputs else "none"
        raise ExportError(f"export supports one per-step input; cell '{g.name}' has {have} "
                          "(export it as yaml, or concatenate the inputs into one)")


class _PyWriter:
    """Writes the ``step`` body: one line per equation, linear as one ``F.linear`` per argument."""

    def __init__(self, g: CellGraph):
        self.g = g
        inline = set(inlined_nodes(g))
        # an argument an op's expression reads twice (blend's z: z * a + (1 - z) * b) gets a line of its own
        for n in g.nodes:
            for i in OPS[n.op].export_reads_twice:
                if i < len(n.args) and g.node_map.get(n.args[i]) is not None \
                        and not OPS[g.node_map[n.args[i]].op].is_literal:
                    inline.discard(n.args[i])
        self.inline = inline
        reserved = set(_PY_RESERVED)
        for prelude in preludes():  # the module-level helpers the module will define
            if prelude.needed(g):
                reserved |= prelude.names
        self.names = Names(reserved)
        for leaf in g.leaf_kinds:
            self.names.bind(leaf)
        # a memory's score bias (0 for a real row, -inf for padding), made by forward
        self.bias_var = {m: self.names.fresh(f"{m}_bias") for m in g.memory}

    def ref(self, name: str) -> tuple[str, int]:
        node = self.g.node_map.get(name)
        if node is None:
            return self.names.bind(name), 9
        if OPS[node.op].is_literal:
            v = OPS[node.op].value(node)
            return (format_number(v), 9) if v >= 0 else (f"({format_number(v)})", 9)
        if name in self.inline:
            return self.expr(name)
        return self.names.bind(name), 9

    def expr(self, name: str) -> tuple[str, int]:
        """Python text of node ``name`` and its precedence (1: + -, 2: *, 3: unary -, 9: atom)."""
        node = self.g.node_map[name]
        args = [self.ref(a) for a in node.args]
        return OPS[node.op].export_expr(self, node, args)

    def step_lines(self) -> list[str]:
        g = self.g
        lines = []
        for name in g.order:
            node = g.node_map[name]
            if name not in g.live or name in self.inline or OPS[node.op].is_literal:
                continue
            lines.append(f"# {name} = {format_equation(g, name, self.inline)}")
            lines.append(f"{self.names.bind(name)} = {self.expr(name)[0]}")
        return lines


def _size_expr(g: CellGraph, leaf: str) -> str:
    kind = g.leaf_kinds.get(leaf, "")
    return {"input": "input_size", "static": "static_size"}.get(kind, "hidden_size")


def python_source(graph: CellGraph, input_size: int, hidden_size: int, static_size: int | None = None, *,
                  card: str = "", weights_file: str | None = None) -> str:
    """The standalone, TorchScript-compatible Python module of a cell (see the module docstring)."""
    from cellsearch.dsl.hashing import canonical_hash

    g = graph
    check_exportable(g)
    cls = class_name(g)
    w = _PyWriter(g)
    names = w.names
    fwd = Names(_PY_RESERVED | _FORWARD_LOCALS)
    static_vars = [fwd.bind(s) for s in g.static]
    state_vars = [fwd.bind(s) for s in g.states]
    n_states = len(g.states)
    state_t = f"Tuple[{', '.join(['Tensor'] * n_states)}]"
    static_t = f"Tuple[{', '.join(['Tensor'] * len(g.static))}]" if g.static else ""
    equations = equation_lines(g)
    elementwise = _elementwise_leaves(g)

    out: list[str] = []
    emit = out.append
    header = card.strip() or f"{g.name}: a recurrent cell exported by cellsearch."
    emit(literals.docstring(header + "\n"))
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
    for prelude in preludes():
        if prelude.needed(g):
            out.extend(prelude.source.splitlines())
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
    if g.memory:
        doc.append(f"* ``memory``: the tuple ({', '.join(g.memory)}{',' if len(g.memory) == 1 else ''}) of "
                   "(B, N, hidden_size) memories ``attend`` reads (required; e.g. an encoder's outputs), and "
                   "``memory_mask`` the tuple of their (B, N) bool masks, True for a real row (None: all real);")
    doc += [f"* ``out``: the output state ``{g.output}`` at every step, (T, B, hidden_size) "
            "(batch first with ``batch_first=True``);",
            "* the returned ``state``: the final states, in the same order.", "",
            "Parameters keep cellsearch's names: ``<node>__w<k>`` is the weight a linear node applies to its",
            "k-th argument (shape (hidden_size, size of the argument)), ``<node>__b`` its bias and",
            "``<node>__p`` the scale of a diag node. The module docstring holds the model card."]
    emit(literals.docstring("\n".join(doc) + "\n", "    "))
    emit("")
    init_args = "self, input_size: int, hidden_size: int, batch_first: bool = False"
    if g.memory_states:
        init_args += f", memory_rows: int = {DEFAULT_MEMORY_ROWS}"
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
        emit("            raise ValueError("
             + literals.string(f"{g.name} uses the {kind} input '{leaf}' elementwise: {size} must equal hidden_size")
             + ")")
    emit("        self.input_size = input_size")
    emit("        self.hidden_size = hidden_size")
    if g.static:
        emit("        self.static_size = static_size")
    emit("        self.batch_first = batch_first")
    if g.memory_states:
        emit("        self.memory_rows = memory_rows  # rows of the memory state(s)")
    inline_eq = inlined_nodes(g)
    for n in g.nodes:
        if n.name not in g.live or OPS[n.op].export_param_phase != 0:
            continue  # (attend's parameters follow)
        owner = g.written_node(n.name)
        emit("        " + literals.comment(f"{n.name} = {format_equation(g, n.name, inline_eq)}"
                                       + ("" if owner == n.name else f"  (in the equation of {owner})")))
        for line in OPS[n.op].export_param_lines(n, lambda a: _size_expr(g, a)):
            emit("        " + line)
    for n in g.nodes:
        if n.name in g.live and OPS[n.op].export_param_phase == 1:
            emit("        " + literals.comment(f"{n.name} = {format_equation(g, n.name, inline_eq)}"))
            for line in OPS[n.op].export_param_lines(n, lambda a: _size_expr(g, a)):
                emit("        " + line)
    emit("        self.reset_parameters()")
    emit("")
    emit("    def reset_parameters(self, init_scale: float = 1.0) -> None:")
    emit('        """Uniform(±init_scale/√hidden_size) like torch\'s RNNs, then the cell\'s own initial values."""')
    emit("        bound = init_scale / math.sqrt(self.hidden_size)")
    emit("        with torch.no_grad():")
    emit("            for p in self.parameters():")
    emit("                p.uniform_(-bound, bound)")
    for n in g.nodes:
        if n.name in g.live:
            for line in OPS[n.op].export_reset_lines(n):
                emit("            " + line)
    emit("")
    step_leaves = [names.bind(leaf) for leaf in (*g.inputs, *g.static, *g.memory)]
    step_leaves += [w.bias_var[m] for m in g.memory] + [names.bind(p) for p in g.prev_names]
    step_args = ", ".join(f"{v}: Tensor" for v in step_leaves)
    step_ret = "Tensor" if n_states == 1 else state_t
    emit(f"    def step(self, {step_args}) -> {step_ret}:")
    emit(f'        """One time step: the new ({state_doc}) from the inputs and the previous states."""')
    for line in w.step_lines():
        emit("        " + line)
    emit(f"        return {', '.join(names.bind(s) for s in g.states)}")
    emit("")
    fwd_args = f"self, x: Tensor, state: Optional[{state_t}] = None"
    if g.static:
        fwd_args += f", static: Optional[{static_t}] = None"
    memory_t = f"Tuple[{', '.join(['Tensor'] * len(g.memory))}]"
    if g.memory:
        fwd_args += f", memory: Optional[{memory_t}] = None, memory_mask: Optional[{memory_t}] = None"
    emit(f"    def forward({fwd_args}) -> Tuple[Tensor, {state_t}]:")
    call_text = "x, state" + (", static" if g.static else "") + (", memory, memory_mask" if g.memory else "")
    emit(f'        """``out, state = cell({call_text})``; see the class docstring."""')
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
    starts = [("x.new_zeros(x.shape[1], self.memory_rows, self.hidden_size)" if starts_empty(g, s) else
               "initial_memory(x.shape[1], self.memory_rows, self.hidden_size, x)") if s in g.memory_states
              else "initial_weights(x.shape[1], self.memory_rows, x)" if s in g.weight_states
              else "zeros" for s in g.states]
    emit(f"            {svars} = {', '.join(starts)}")
    emit("        else:")
    if n_states == 1:
        emit(f"            {state_vars[0]} = state[0]")
    else:
        emit(f"            {svars} = state")
    if g.static:
        emit("        if static is None:")
        emit("            raise ValueError("
             + literals.string(f"{g.name} needs its static input(s) {', '.join(g.static)}: pass static=(...)") + ")")
        for i, v in enumerate(static_vars):
            emit(f"        {v} = static[{i}]")
    memory_vars = [fwd.bind(m) for m in g.memory]
    bias_vars = [fwd.fresh(f"{m}_bias") for m in g.memory]
    if g.memory:
        emit("        if memory is None:")
        emit("            raise ValueError("
             + literals.string(f"{g.name} attends to its memory {', '.join(g.memory)}: pass memory=(M,) with M of "
                               "shape (B, N, hidden_size)") + ")")
        for i, (v, b) in enumerate(zip(memory_vars, bias_vars)):
            emit(f"        {v} = memory[{i}]")
            emit(f"        if {v}.dim() != 3 or {v}.shape[2] != self.hidden_size:")
            emit("            raise ValueError(\"a memory must have shape (B, N, hidden_size)\")")
            emit(f"        {b} = torch.zeros({v}.shape[0], {v}.shape[1], dtype={v}.dtype, device={v}.device)")
            emit("        if memory_mask is not None:")
            emit(f"            {b} = {b}.masked_fill(memory_mask[{i}].logical_not(), float(\"-inf\"))")
    emit("        outs: List[Tensor] = []")
    emit("        for x_t in x.unbind(0):")
    call = ", ".join(["x_t", *static_vars, *memory_vars, *bias_vars, *state_vars])
    emit(f"            {svars} = self.step({call})")
    emit(f"            outs.append({fwd.bind(g.output)})")
    emit("        out = torch.stack(outs)")
    emit("        if self.batch_first:")
    emit("            out = out.transpose(0, 1)")
    emit(f"        return out, ({svars}{',' if n_states == 1 else ''})")
    emit("")
    emit("")
    emit(f"def load(weights_path: Optional[str] = None, batch_first: bool = False, "
         f"map_location: str = \"cpu\") -> {cls}:")
    emit(literals.docstring(f"The {_title(g)} with the exported weights (default: WEIGHTS next to this file), in "
                            "eval mode.", "    "))
    emit("    path = Path(weights_path) if weights_path is not None else Path(__file__).with_name(WEIGHTS)")
    emit("    state_dict = torch.load(path, map_location=map_location, weights_only=True)")
    extra = ", static_size=STATIC_SIZE" if g.static else ""
    emit(f"    model = {cls}(INPUT_SIZE, HIDDEN_SIZE, batch_first=batch_first{extra})")
    emit("    model.load_state_dict(state_dict)")
    emit("    return model.eval()")
    return "\n".join(out) + "\n"


def _title(g: CellGraph) -> str:
    return g.name if g.name.lower().endswith("cell") else f"{g.name} cell"


def equation_lines(g: CellGraph) -> list[str]:
    """The cell's equations as the module docstring and the model card show them."""
    inline = inlined_nodes(g)
    return [f"{n.name} = {format_equation(g, n.name, inline)}" + ("" if n.name in g.live else "  (unused)")
            for n in g.nodes if n.name not in inline]


def _elementwise_leaves(g: CellGraph) -> list[str]:
    """Inputs and static inputs used directly by a non-linear node (their size must be hidden_size)."""
    out: list[str] = []
    for n in g.nodes:
        if OPS[n.op].is_matmul:
            continue
        for a in n.args:
            if g.leaf_kinds.get(a) in ("input", "static") and a not in out:
                out.append(a)
    return out


@contextlib.contextmanager
def imported(path: Path):
    """Import a generated module from its file (TorchScript reads the source through ``inspect``)."""
    name = f"_cellsearch_export_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None  # a .py file (every caller writes one) has both
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


def instance(g: CellGraph, module, params: CellParameters, state: dict) -> torch.nn.Module:
    """The cell class of an imported generated module, at ``params``' sizes, holding ``state``, in eval mode."""
    cls = getattr(module, class_name(g))
    kw = {"static_size": params.static_size} if g.static else {}
    model = cls(params.input_size, params.hidden_size, **kw)
    model.load_state_dict(state)
    return model.eval()


__all__ = ["check_exportable", "class_name", "equation_lines", "imported", "instance", "python_source"]

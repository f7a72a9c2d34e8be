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

from cellsearch.compile.memory import DEFAULT_MEMORY_ROWS, EPS, INITIAL_SCALE
from cellsearch.compile.params import ATTENTION_ROLES, CellParameters, attention_name, bias_name, scale_name, weight_name
from cellsearch.dsl.equations import format_equation, format_number, inlined_nodes
from cellsearch.dsl import literals
from cellsearch.dsl.graph import CellGraph
from cellsearch.dsl.names import PYTHON_RESERVED, Names
from cellsearch.export.base import ExportError, version

_PY_RESERVED = PYTHON_RESERVED | {"self", "torch", "F", "nn", "Tensor", "Optional", "Tuple", "List", "math", "Path"}
_FORWARD_LOCALS = {"x", "state", "static", "memory", "memory_mask", "zeros", "outs", "x_t", "out"}
_ATTENTION_FUNCTIONS = {"attend", "attend_additive"}  # module-level helpers of a cell with a memory
_MEMORY_FUNCTIONS = {"address", "read", "write", "initial_memory"}  # and of a cell with a memory state


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
        # blend(z, a, b) reads z twice (z * a + (1 - z) * b): give z a line of its own
        for n in g.nodes:
            if n.op == "blend" and n.args and g.node_map.get(n.args[0]) is not None \
                    and g.node_map[n.args[0]].op != "const":
                inline.discard(n.args[0])
        self.inline = inline
        self.names = Names(_PY_RESERVED | (_ATTENTION_FUNCTIONS if g.memory else set())
                           | (_MEMORY_FUNCTIONS if g.memory_states else set()))
        for leaf in g.leaf_kinds:
            self.names.bind(leaf)
        # a memory's score bias (0 for a real row, -inf for padding), made by forward
        self.bias_var = {m: self.names.fresh(f"{m}_bias") for m in g.memory}

    def ref(self, name: str) -> tuple[str, int]:
        node = self.g.node_map.get(name)
        if node is None:
            return self.names.bind(name), 9
        if node.op == "const":
            v = node.attr("value")
            return (format_number(v), 9) if v >= 0 else (f"({format_number(v)})", 9)
        if name in self.inline:
            return self.expr(name)
        return self.names.bind(name), 9

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
        if op == "attend":
            q, memory = args[0][0], self.names.bind(node.args[1])
            bias = self.bias_var[node.args[1]]
            kind = node.attr("kind")
            if kind == "dot":
                return f"attend({q}, {memory}, {memory}, {bias})", 9
            keys = f"F.linear({memory}, self.{attention_name(name, 'wk')})"
            if kind == "general":
                return f"attend({q}, {keys}, {memory}, {bias})", 9
            return (f"attend_additive({q}, self.{attention_name(name, 'wq')}, {keys}, "
                    f"self.{attention_name(name, 'v')}, {memory}, {bias})"), 9
        if op in ("address", "read", "write"):
            return f"{op}({', '.join(t for t, _ in args)})", 9
        raise ExportError(f"cannot export op '{op}' of node '{name}'")  # pragma: no cover - op table moved

    def step_lines(self) -> list[str]:
        g = self.g
        lines = []
        for name in g.order:
            node = g.node_map[name]
            if name not in g.live or name in self.inline or node.op == "const":
                continue
            lines.append(f"# {name} = {format_equation(g, name, self.inline)}")
            lines.append(f"{self.names.bind(name)} = {self.expr(name)[0]}")
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
    if g.memory:
        out.extend(_ATTENTION_SOURCE.splitlines())
        emit("")
        emit("")
    if g.memory_states:
        out.extend(_MEMORY_SOURCE.splitlines())
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
        if n.name not in g.live or n.op not in ("linear", "diag"):
            continue  # (attend's parameters follow)
        owner = g.written_node(n.name)
        emit("        " + literals.comment(f"{n.name} = {format_equation(g, n.name, inline_eq)}"
                                       + ("" if owner == n.name else f"  (in the equation of {owner})")))
        if n.op == "linear":
            for k, a in enumerate(n.args):
                emit(f"        self.{weight_name(n.name, k)} = nn.Parameter(torch.empty(hidden_size, "
                     f"{_size_expr(g, a)}))  # for {a}")
            if n.attr("bias"):
                emit(f"        self.{bias_name(n.name)} = nn.Parameter(torch.empty(hidden_size))")
        elif n.op == "diag":
            emit(f"        self.{scale_name(n.name)} = nn.Parameter(torch.empty(hidden_size))")
    for n in g.nodes:
        if n.name in g.live and n.op == "attend":
            emit("        " + literals.comment(f"{n.name} = {format_equation(g, n.name, inline_eq)}"))
            for role in ATTENTION_ROLES[n.attr("kind")]:
                shape = "hidden_size" if role == "v" else "hidden_size, hidden_size"
                emit(f"        self.{attention_name(n.name, role)} = nn.Parameter(torch.empty({shape}))")
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
    starts = ["initial_memory(x.shape[1], self.memory_rows, self.hidden_size, x)" if s in g.memory_states
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


_ATTENTION_SOURCE = '''def attend(q: Tensor, keys: Tensor, values: Tensor, bias: Tensor) -> Tensor:
    """attend(q, M): the softmax(q · key_n + bias_n)-weighted sum of the memory rows (B, H);
    padding rows have bias -inf, so their weight is 0."""
    scores = torch.matmul(keys, q.unsqueeze(-1)).squeeze(-1) + bias  # (B, N)
    weights = torch.softmax(scores, -1)
    return torch.matmul(weights.unsqueeze(1), values).squeeze(1)


def attend_additive(q: Tensor, wq: Tensor, keys: Tensor, v: Tensor, values: Tensor, bias: Tensor) -> Tensor:
    """attend(q, M, kind=additive): scores v · tanh(Wq q + U m_n) (Bahdanau); keys = U M."""
    hidden = torch.tanh(keys + F.linear(q, wq).unsqueeze(1))  # (B, N, H)
    weights = torch.softmax(torch.matmul(hidden, v) + bias, -1)
    return torch.matmul(weights.unsqueeze(1), values).squeeze(1)'''


_MEMORY_SOURCE = f'''def initial_memory(batch: int, rows: int, hidden: int, like: Tensor) -> Tensor:
    """Where a memory state starts: row n is {INITIAL_SCALE} * sin/cos(n * frequency_h), rows distinct."""
    n = torch.arange(rows, dtype=like.dtype, device=like.device).unsqueeze(1)
    h = torch.arange(hidden, dtype=like.dtype, device=like.device)
    freq = torch.exp(-(h - h % 2) * (math.log(1000.0) / max(hidden, 1)))
    angle = n * freq + (h % 2) * (math.pi / 2)
    return ({INITIAL_SCALE!r} * torch.sin(angle)).expand(batch, rows, hidden).clone()


def address(k: Tensor, memory: Tensor, beta: Tensor) -> Tensor:
    """Content addressing: softmax_n(softplus(mean(beta)) * cos(k, M_n)), weights (B, N)."""
    dots = torch.matmul(memory, k.unsqueeze(-1)).squeeze(-1)
    norms = torch.linalg.vector_norm(memory, 2, [-1]) * torch.linalg.vector_norm(k, 2, [-1], True) + {EPS!r}
    return torch.softmax(F.softplus(beta.mean(-1, keepdim=True)) * dots / norms, -1)


def read(w: Tensor, memory: Tensor) -> Tensor:
    """The w-weighted sum of the memory rows (B, H)."""
    return torch.matmul(w.unsqueeze(-2), memory).squeeze(-2)


def write(memory: Tensor, w: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """M * (1 - w erase^T) + w add^T."""
    wt = w.unsqueeze(-1)
    return memory * (1 - wt * erase.unsqueeze(-2)) + wt * add.unsqueeze(-2)'''


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
        if n.op == "linear":
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

"""Fused pointwise kernels: a cell's step and step backward as Triton kernels between its matmuls.

The eager step (``emit_forward.py``/``emit_backward.py``) runs every elementwise op of a time step as its
own torch kernel; on a GPU each is a launch of a few microseconds over a tiny tensor, and the
step is launch-bound. Here the same schedule is cut at its matmuls into *stages*: stage 0 is
everything computable from the previous states and group 0's matmul, stage s + 1 everything
that needs a matmul whose argument stage s computed (GRU: ``r * h_prev`` feeds the candidate's
matmul, so GRU has two stages; LSTM has one). Each stage is ONE generated Triton kernel, forward
and backward, so an LSTM step is one matmul and one kernel each way, as in haste.

* Forward kernel of a stage: loads what the stage reads (previous states, hoisted per-step
  values and constants, the matmuls' outputs, values of earlier stages), computes the stage's
  values in registers and stores those read outside it (new states, matmul arguments, values a
  later stage reads).
* Backward kernel of a stage: recomputes the stage's values from the same loads (cheaper than
  saving them), then runs reverse mode in registers, seeded by the gradients of the new states,
  of values later stages read and of the matmul arguments; it writes each linear node's gradient
  into its group's ``d_lin`` columns (the runtime turns those into weight gradients, one GEMM per
  weight, after the loop) and accumulates the gradients of what it read.

The generated host functions ``step``/``step_backward`` keep the eager functions' calling
convention (the runtime's loop in ``loop.py``, its CUDA graphs and populations run them unchanged);
``FusedProgram`` is a ``CellProgram`` with them swapped in. Every value is indexed as
(member, batch, feature) with per-tensor strides, so broadcast constants and a population's
stacked tensors need no copies. Sources are cached by their text (the cell's hash and sizes are
in it), so cells of one structure share compiled kernels. Without a GPU the kernels run under
Triton's interpreter (``TRITON_INTERPRET=1``), which is how the tests check them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from cellsearch.compile.codegen import CellProgram, GeneratedCode, load_code
from cellsearch.compile.matmuls import HELPERS
from cellsearch.compile.variables import Variables, columns, unpack
from cellsearch.dsl import literals
from cellsearch.dsl.graph import prev_name
from cellsearch.ops.registry import OPS

try:  # Triton ships with CUDA builds of torch; the CPU wheel has none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = tl = None


def triton_available() -> bool:
    """Whether Triton can be imported here (it runs on CUDA, or on CPU under ``TRITON_INTERPRET=1``)."""
    return triton is not None


def interpreting() -> bool:
    """Whether Triton kernels run under Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def can_fuse(device: torch.device) -> bool:
    """Whether fused kernels can run on ``device``: Triton on CUDA, or its interpreter on CPU."""
    if triton is None:
        return False
    return device.type == "cuda" or (device.type == "cpu" and interpreting())


# ---------------------------------------------------------------------------------------------- plan
@dataclass
class Stage:
    """The loop values one kernel computes, and what it reads and writes."""

    index: int
    nodes: list[str] = field(default_factory=list)  # loop values computed here, dependencies first
    reads: list[str] = field(default_factory=list)  # values from outside: prevs, hoisted values, earlier stages
    outputs: list[str] = field(default_factory=list)  # values read outside the stage (states, later stages, matmuls)
    matmuls_before: list[int] = field(default_factory=list)  # groups whose matmul runs right before this stage


class FusedPlan:
    """A cell's schedule cut at its matmuls into stages (see the module docstring)."""

    def __init__(self, v: Variables):
        schedule, g = v.schedule, v.graph
        self.v = v
        self.lin_var: dict[int, str] = {}  # group -> the host variable holding its matmul's output
        prevs = {prev_name(s) for s in schedule.recurrent_states}
        stage: dict[str, int] = {}
        ready: dict[int, int] = {}  # group -> the stage that computes its argument (-1: previous states)
        for n in schedule.loop_nodes:
            node = g.node_map[n]
            if OPS[node.op].is_literal:
                continue
            if OPS[node.op].is_matmul:
                for gi in schedule.member_groups[n]:
                    if gi not in ready:
                        args = schedule.groups[gi].args
                        ready[gi] = -1 if all(a in prevs for a in args) else stage[args[0]]
                stage[n] = max(ready[gi] + 1 for gi in schedule.member_groups[n])
            else:
                stage[n] = max([0] + [stage[a] for a in node.args if a in stage])
        self.stage_of = stage
        self.ready = ready
        n_stages = max(stage.values()) + 1 if stage else 0
        self.stages = [Stage(s) for s in range(n_stages)]
        for gi, r in sorted(ready.items()):
            self.stages[r + 1].matmuls_before.append(gi)
        group_args = {schedule.groups[gi].args[0] for gi, r in ready.items() if r >= 0}
        read_later: set[str] = set()
        for n in schedule.loop_nodes:
            if n not in stage:
                continue
            st = self.stages[stage[n]]
            st.nodes.append(n)
            node = g.node_map[n]
            if OPS[node.op].is_matmul:
                continue  # reads its groups' matmul outputs
            for a in node.args:
                if v.is_const(a) or (a in stage and stage[a] == stage[n]):
                    continue
                if a in stage:
                    read_later.add(a)
                if a not in st.reads:
                    st.reads.append(a)
        states = set(schedule.recurrent_states)
        for st in self.stages:
            st.outputs = [n for n in st.nodes if n in states or n in read_later or n in group_args]
        # What the backward needs from the forward: every matmul's output and every value that
        # crosses a stage (the runtime reads group arguments from here for the weight gradients).
        self.crossing = [n for st in self.stages for n in st.outputs if n in read_later or n in group_args]

    def parts(self, n: str) -> list[tuple[int, int]]:
        """A linear node's (group, member index) pairs: its value is the sum of those matmul columns."""
        schedule = self.v.schedule
        return [(gi, schedule.groups[gi].members.index(n)) for gi in schedule.member_groups[n]]


# ---------------------------------------------------------------------------------------- kernels
def _local(v: Variables, a: str) -> str:
    """A value's name inside a kernel (constants inline as literals)."""
    return v.ref(a) if v.is_const(a) else f"v_{v.names[a]}"


class _OpContext:
    """What an op's Triton rules ask of the kernel being generated (see ``cellsearch.ops.base``)."""

    def __init__(self, v: Variables):
        self.v = v
        self.interpreting = interpreting()  # tanh: the interpreter has no libdevice
        self.scale_grads: dict[str, str] = {}  # node -> expression of its scale's gradient

    def scale(self, node: str) -> str:
        """The kernel-local value of node ``node``'s scale."""
        return f"s_{self.v.names[node]}"

    def scale_grad(self, node: str, expr: str) -> None:
        self.scale_grads[node] = expr


def _forward_expr(v: Variables, n: str) -> str:
    node = v.graph.node_map[n]
    return OPS[node.op].triton_forward(_OpContext(v), node, [_local(v, x) for x in node.args])


class _Kernel:
    """Source of one generated Triton kernel: operands (loaded, stored or accumulated) and a body."""

    def __init__(self, name: str):
        self.name = name
        self.operands: list[tuple[str, str]] = []  # (kernel-local value, "in" | "out" | "acc")
        self.body: list[str] = []

    def operand(self, local: str, role: str) -> int:
        self.operands.append((local, role))
        return len(self.operands) - 1

    def source(self) -> str:
        n = len(self.operands)
        ptrs = ", ".join(f"p{i}" for i in range(n))
        strides = ", ".join(f"s{i}k, s{i}b, s{i}j" for i in range(n))
        lines = ["@triton.jit",
                 f"def {self.name}({ptrs}, {strides}, N, B, H, BLOCK: tl.constexpr):",
                 "    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)",
                 "    mask = offs < N",
                 "    j = offs % H",
                 "    r = offs // H",
                 "    b = r % B",
                 "    m = r // B"]
        for i, (local, role) in enumerate(self.operands):
            if role == "in":
                lines.append(f"    {local} = tl.load(p{i} + m * s{i}k + b * s{i}b + j * s{i}j, mask=mask)")
        lines += self.body
        for i, (local, role) in enumerate(self.operands):
            at = f"p{i} + m * s{i}k + b * s{i}b + j * s{i}j"
            if role == "out":
                lines.append(f"    tl.store({at}, {local}, mask=mask)")
            elif role == "acc":
                lines.append(f"    tl.store({at}, tl.load({at}, mask=mask) + {local}, mask=mask)")
        return "\n".join(lines)


def _forward_body(plan: FusedPlan, st: Stage, kernel: _Kernel, host_args: list[str]) -> None:
    """Operands and body computing ``st``'s values (shared by the forward and backward kernels)."""
    v, g = plan.v, plan.v.graph
    for a in st.reads:
        kernel.operand(_local(v, a), "in")
        host_args.append(v.ref(a))
    for n in st.nodes:
        node = g.node_map[n]
        if OPS[node.op].is_matmul:
            terms = []
            for gi, k in plan.parts(n):
                local = f"l{gi}_{k}"
                if (local, "in") not in kernel.operands:
                    kernel.operand(local, "in")
                    host_args.append(columns(plan.lin_var[gi], k, k + 1))
                terms.append(local)
            kernel.body.append(f"    {_local(v, n)} = {' + '.join(terms)}")
            continue
        if OPS[node.op].has_scale:
            kernel.operand(f"s_{v.names[n]}", "in")
            host_args.append(v.diag_param_var[n])
        kernel.body.append(f"    {_local(v, n)} = {_forward_expr(v, n)}")


class _Grads:
    """Reverse-mode bookkeeping inside one backward kernel: a register per value's gradient."""

    def __init__(self, body: list[str]):
        self.body = body
        self.have: set[str] = set()

    def add(self, local: str, expr: str, sign: int = 1) -> None:
        name = f"g_{local}"
        if name in self.have:
            self.body.append(f"    {name} = {name} {'+' if sign > 0 else '-'} ({expr})")
        else:
            self.have.add(name)
            self.body.append(f"    {name} = {expr}" if sign > 0 else f"    {name} = -({expr})")

    def get(self, local: str) -> str | None:
        name = f"g_{local}"
        return name if name in self.have else None


def _backward_rule(v: Variables, n: str, gvar: str, grads: _Grads, diag_out: dict[str, str]) -> None:
    """Add node ``n``'s contributions (its gradient in ``gvar``) to its arguments' gradients:
    its op's ``triton_backward`` rule."""
    node = v.graph.node_map[n]
    a = [_local(v, x) for x in node.args]
    consts = [v.is_const(x) for x in node.args]

    def add(i: int, expr: str, sign: int = 1) -> None:
        if not consts[i]:
            grads.add(a[i], expr, sign)

    ctx = _OpContext(v)
    ctx.scale_grads = diag_out
    OPS[node.op].triton_backward(ctx, node, a, _local(v, n), gvar, add)


# ------------------------------------------------------------------------------------- generation
def generate_fused(program: CellProgram) -> tuple[GeneratedCode, list[str]]:
    """The Triton kernels and host ``step``/``step_backward`` of ``program``, and its saved names."""
    v = program.variables
    schedule, g, nm = v.schedule, v.graph, v.names
    plan = FusedPlan(v)
    plan.lin_var = {gi: nm.fresh(f"lin{gi}") for gi in plan.ready}
    ref = nm[prev_name(schedule.recurrent_states[0])]
    kernels: list[str] = []
    tup = _tuple

    # ---- forward: matmul(s), then the stage's kernel
    fwd = v.step_header("step")
    for st in plan.stages:
        for gi in st.matmuls_before:
            grp = schedule.groups[gi]
            if len(grp.args) == 1:
                arg = v.ref(grp.args[0])
            else:
                arg = f"torch.cat(({', '.join(v.ref(x) for x in grp.args)}), -1)"
            mm = f"linear_add({arg}, {grp.weight}, {grp.base})" if grp.base_kind else f"linear({arg}, {grp.weight})"
            fwd.append(f"    {plan.lin_var[gi]} = {mm}")
        k = _Kernel(nm.fresh(f"fwd_stage{st.index}"))
        host: list[str] = []
        _forward_body(plan, st, k, host)
        for n in st.outputs:
            k.operand(_local(v, n), "out")
            fwd.append(f"    {nm[n]} = {ref}.new_empty({ref}.shape)")
            host.append(nm[n])
        fwd.append(f"    launch({k.name}, {ref}, {tup(host)})")
        kernels.append(k.source())
    saved = [plan.lin_var[gi] for gi in sorted(plan.ready)] + [nm[n] for n in plan.crossing]
    new = [nm[s] for s in schedule.recurrent_states]
    fwd.append(f"    return {tup(new)}, {tup(saved)}")

    # ---- backward: stages in reverse, each followed by the matmuls whose arguments it needs
    d_new = {s: nm.fresh(f"dn_{s}") for s in schedule.recurrent_states}
    d_lin = {gi: nm.fresh(f"d_lin{gi}") for gi in range(len(schedule.groups))}
    bwd = v.step_header("step_backward", "d_new, ", ", saved, d_lin")
    bwd += unpack(saved, "saved")
    bwd += unpack([d_new[s] for s in schedule.recurrent_states], "d_new")
    bwd += unpack([d_lin[gi] for gi in range(len(schedule.groups))], "d_lin")
    buffers: dict[str, str] = {}  # value read by a later stage, or a hoisted/previous one -> its gradient buffer
    arg_grad: dict[str, str] = {}  # stage value that is a matmul argument -> gradient from that matmul
    diag_grads: dict[str, str] = {}
    states = set(schedule.recurrent_states)
    for st in reversed(plan.stages):
        k = _Kernel(nm.fresh(f"bwd_stage{st.index}"))
        host = []
        _forward_body(plan, st, k, host)
        grads = _Grads(k.body)
        for n in st.nodes:  # seeds: new states, later stages' reads, matmul arguments
            seeds = []
            if n in states:
                seeds.append(d_new[n])
            if n in buffers:
                seeds.append(buffers.pop(n))
            if n in arg_grad:
                seeds.append(arg_grad.pop(n))
            for i, seed in enumerate(seeds):
                local = f"d{len(k.operands)}"
                k.operand(local, "in")
                host.append(seed)
                grads.add(_local(v, n), local)
        diag_out: dict[str, str] = {}
        for n in reversed(st.nodes):
            gvar = grads.get(_local(v, n))
            node = g.node_map[n]
            if OPS[node.op].is_matmul:
                if gvar is not None:
                    for gi, m in plan.parts(n):
                        local = f"dl{gi}_{m}"
                        k.body.append(f"    {local} = {gvar}")
                        k.operand(local, "out")
                        host.append(columns(d_lin[gi], m, m + 1))
                continue
            if gvar is not None:
                _backward_rule(v, n, gvar, grads, diag_out)
        for n, expr in diag_out.items():
            local = f"dd_{nm[n]}"
            k.body.append(f"    {local} = {expr}")
            k.operand(local, "out")
            diag_grads[n] = nm.fresh(f"d_scale_{n}")
            bwd.append(f"    {diag_grads[n]} = {ref}.new_empty({ref}.shape)")
            host.append(diag_grads[n])
        for a in st.reads:  # gradients of what the stage read: store the first, accumulate later ones
            gvar = grads.get(_local(v, a))
            if gvar is None:
                continue
            if a in buffers:
                k.operand(gvar, "acc")
            else:
                buffers[a] = nm.fresh(f"d_{a}")
                bwd.append(f"    {buffers[a]} = {ref}.new_empty({ref}.shape)")
                k.operand(gvar, "out")
            host.append(buffers[a])
        bwd.append(f"    launch({k.name}, {ref}, {tup(host)})")
        kernels.append(k.source())
        for gi in st.matmuls_before:  # this stage's matmuls, backwards: gradients of their arguments
            grp = schedule.groups[gi]
            if plan.ready[gi] >= 0:
                arg_grad[grp.args[0]] = nm.fresh(f"d_arg{gi}")
                bwd.append(f"    {arg_grad[grp.args[0]]} = matmul_w({d_lin[gi]}, {grp.weight})")
                continue
            for i, p in enumerate(grp.args):  # previous states: add to what the kernels accumulated
                w = grp.weight if len(grp.args) == 1 else f"{grp.weight}[..., {i} * H:{i + 1} * H]"
                if p in buffers:
                    bwd.append(f"    {buffers[p]} = add_matmul_w({buffers[p]}, {d_lin[gi]}, {w})")
                else:
                    buffers[p] = nm.fresh(f"d_{p}")
                    bwd.append(f"    {buffers[p]} = matmul_w({d_lin[gi]}, {w})")
    bases = {grp.base for grp in schedule.groups if grp.base}
    hoisted_of = {nm[a]: a for a in buffers}
    d_prev = [buffers.get(prev_name(s), "None") for s in schedule.recurrent_states]
    d_ext = ["None" if e in bases else buffers.get(hoisted_of.get(e, ""), "None") for e in v.ext]
    d_const = ["None" if (kind != "value" or c in bases) else buffers.get(hoisted_of.get(c, ""), "None")
               for c, kind in zip(v.consts, v.const_kinds)]
    d_diag = [diag_grads.get(n, "None") for n in v.loop_diags]
    bwd.append(f"    return {tup(d_prev)}, {tup(d_ext)}, {tup(d_const)}, {tup(d_diag)}")

    header = (literals.comment(f"fused Triton kernels generated by cellsearch for cell {g.name!r}") + "\n"
              f"# sizes: input I={schedule.input_size}, hidden H={schedule.hidden_size}\n")
    source = header + "\n\n".join([*kernels, "\n".join(fwd), "\n".join(bwd)]) + "\n"
    namespace = {"torch": torch, "triton": triton, "tl": tl, **HELPERS, "launch": launch,
                 "H": schedule.hidden_size, "I": schedule.input_size, "S": schedule.static_size}
    if not interpreting():
        from triton.language.extra import libdevice

        namespace["libdevice"] = libdevice
    code = GeneratedCode(source, namespace, f"<cellsearch-fused {program.code.filename[1:-1]}>")
    return code, saved


def _tuple(xs: list[str]) -> str:
    return "(" + ", ".join(xs) + ("," if len(xs) == 1 else "") + ")"


def launch(kernel: Any, ref: torch.Tensor, operands: tuple) -> None:
    """Run a generated stage kernel over every (member, batch, feature) element of ``ref``'s shape;
    each operand is indexed through its own strides (0 where it broadcasts)."""
    shape = ref.shape
    strides: list[int] = []
    tensors = []
    for t in operands:
        if t.shape != shape:
            t = t.expand(shape)
        st = t.stride()
        strides.extend((0, *st) if len(st) == 2 else st)
        tensors.append(t)
    B, H = shape[-2], shape[-1]
    n = ref.numel()
    block = min(1024, triton.next_power_of_2(n)) if not interpreting() else triton.next_power_of_2(n)
    kernel[(triton.cdiv(n, block),)](*tensors, *strides, n, B, H, BLOCK=block)


@lru_cache(maxsize=256)
def _load(source: str, filename: str, names: tuple) -> dict[str, Any]:
    """Exec a generated source once per distinct text (kernels stay compiled across cells)."""
    return load_code(GeneratedCode(source, dict(names), filename))


class FusedProgram:
    """A ``CellProgram`` whose ``step``/``step_backward`` launch fused Triton kernels.

    It has what the runtime reads of a program (schedule, names, calling convention, saved
    names), so ``sequence.recur`` runs it as it runs the eager one."""

    def __init__(self, program: CellProgram):
        if not program.schedule.recurrent_states:
            raise ValueError("a cell without recurrent states has no time loop to fuse")
        self.base = program
        self.graph = program.graph
        self.schedule = program.schedule
        self.variables = program.variables
        self.names = program.names
        self.ext, self.consts, self.const_kinds = program.ext, program.consts, program.const_kinds
        self.loop_diags = program.loop_diags
        self.pack_weights = False  # the host code slices weights; oneDNN-packed ones cannot be sliced
        self.cuda_graph_cache: Any = None  # CUDA graph captures of this program (cuda_graphs.py)
        self.code, self.saved = generate_fused(program)
        globals_ = self.code.globals
        namespace = _load(self.code.source, self.code.filename,
                          tuple((k, globals_[k]) for k in sorted(globals_)))
        self.step = namespace["step"]
        self.step_backward = namespace["step_backward"]

    @property
    def source(self) -> str:
        """The generated source of the fused step functions and their Triton kernels."""
        return self.code.source


__all__ = ["FusedPlan", "FusedProgram", "can_fuse", "generate_fused", "interpreting", "launch",
           "triton_available"]

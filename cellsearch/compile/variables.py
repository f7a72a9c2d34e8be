"""The generated functions' variables: a Python name for every value, and what each function receives.

Given a ``Schedule``, ``Variables`` names every value of the cell (through the shared
``cellsearch.dsl.names.Names`` allocator, so a node keeps its name unless it clashes) and fixes
the calling convention between the prologue, the step functions and the runtime:

* ``ext``: per-step tensors, (T, B, ...) sequences the runtime unbinds along T;
* ``consts``: tensors constant over the steps, with ``const_kinds`` "value" (gets a gradient
  per step), "weight" (a fused group weight) or "scale" (the parameter of an in-loop diag);
  an in-loop ``attend`` adds its memory, the memory's score bias and its keys and parameters
  as values (``aux``: names like ``c.keys`` that are not cell values but get gradients alike);
* the names ``step`` and ``step_backward`` share: matmul chunks, activation runs and the
  multiplications folded into ``torch.addcmul``.

``saved`` (the loop values ``step`` hands to ``step_backward``) is filled in by the backward
emitter, which decides what it reads.
"""

from __future__ import annotations

from cellsearch.compile.attention import ATTENTION_HELPERS
from cellsearch.compile.location import LOCATION_HELPERS
from cellsearch.compile.memory import MEMORY_HELPERS
from cellsearch.compile.matmuls import HELPERS
from cellsearch.compile.schedule import Schedule
from cellsearch.compile.stack import STACK_HELPERS
from cellsearch.dsl.equations import format_number
from cellsearch.dsl.graph import prev_name
from cellsearch.dsl.names import PYTHON_RESERVED, Names
from cellsearch.ops.registry import OPS

# The functions the generated code calls: the matmul helpers and the memory ops' forward and backward.
GENERATED_HELPERS = {**HELPERS, **ATTENTION_HELPERS, **MEMORY_HELPERS, **STACK_HELPERS, **LOCATION_HELPERS}
# What the generated code itself uses: modules, sizes, function arguments and the helpers, and
# what the fused kernels' host code adds (fused.py).
CODEGEN_RESERVED = PYTHON_RESERVED | {"torch", "F", "aten", "H", "I", "S", "P", "T", "B", "xt", "prev", "consts",
                                      "saved", "d_new", "inputs", "statics", "inits", "self", *GENERATED_HELPERS,
                                      "triton", "tl", "libdevice", "launch", "_tanh", "_sigmoid"}


class Variables:
    """Names and calling convention of one cell's generated code (see the module docstring)."""

    def __init__(self, schedule: Schedule):
        graph = schedule.graph
        self.graph = graph
        self.schedule = schedule
        self.names = names = Names(CODEGEN_RESERVED)
        for v in [*graph.inputs, *graph.static, *graph.memory, *graph.prev_names, *(n.name for n in graph.nodes)]:
            names.bind(v)
        for grp in schedule.groups:
            grp.weight = names.fresh(f"W{grp.index}")
            if grp.base_kind:
                grp.base = names.fresh(f"base{grp.index}")
        self.loop_diags = [n for n in schedule.loop_nodes if OPS[graph.node_map[n].op].has_scale]

        # Values computed in the prologue that the loop reads.
        loop_reads: list[str] = []
        for n in schedule.loop_nodes:
            node = graph.node_map[n]
            if OPS[node.op].is_matmul:
                continue  # hoisted linear arguments go into the group bases
            for a in node.args:
                if a not in schedule.loop_values and self.is_const(a):
                    continue
                if a not in schedule.loop_values and a not in loop_reads:
                    loop_reads.append(a)
        self.ext: list[str] = []  # per-step tensors, (T, B, ...) unbound along T
        self.consts: list[str] = []  # tensors constant over the steps
        self.const_kinds: list[str] = []  # "value" (gets a gradient per step), "weight", "scale"
        for grp in schedule.groups:
            if grp.base_kind == "step":
                self.ext.append(grp.base)
            elif grp.base_kind == "fixed":
                self.consts.append(grp.base)
                self.const_kinds.append("value")
        for a in loop_reads:
            if a in schedule.time_varying:
                self.ext.append(names[a])
            else:
                self.consts.append(names[a])
                self.const_kinds.append("value")
        # Memories: each comes with its score bias (padding rows -inf); an in-loop attend reads
        # its keys and parameters as constants too, and hands its weights to the backward.
        self.memory_bias = {m: self.aux(m, "bias") for m in graph.memory}
        self.attend_aux: dict[str, dict[str, str]] = {}  # in-loop attend node -> role -> aux value
        self.attend_out: dict[str, tuple[str, ...]] = {}  # in-loop attend node -> its step outputs (w[, e])
        for n in schedule.loop_nodes:
            node = graph.node_map[n]
            op = OPS[node.op]
            if not op.reads_given_memory:
                continue
            roles = {"bias": self.memory_bias[node.args[op.memory_arg]]}
            roles.update({r: self.aux(n, r) for r in op.step_aux_roles(node)})
            self.attend_aux[n] = roles
            for value in roles.values():
                if names[value] not in self.consts:
                    self.consts.append(names[value])
                    self.const_kinds.append("value")
            self.attend_out[n] = tuple(names.fresh(f"{n}_{o}") for o in op.step_outputs(node))
        for grp in schedule.groups:
            self.consts.append(grp.weight)
            self.const_kinds.append("weight")
        for n in self.loop_diags:
            self.consts.append(names.fresh(f"p_{n}"))
            self.const_kinds.append("scale")
        self.diag_param_var = {n: self.consts[len(self.consts) - len(self.loop_diags) + i]
                               for i, n in enumerate(self.loop_diags)}
        self.saved: list[str] = []  # loop values the backward reads, in order (set by the backward emitter)
        self._name_step_values()

    def _name_step_values(self) -> None:
        """Names shared by step and step_backward: group chunks, activation runs, fused muls."""
        g, schedule, nm = self.graph, self.schedule, self.names
        self.part_names: dict[tuple[str, int], str] = {}
        for grp in schedule.groups:
            for L in grp.members:
                if len(schedule.member_groups[L]) == 1:
                    self.part_names[(L, grp.index)] = nm[L]
                else:
                    self.part_names[(L, grp.index)] = nm.fresh(f"{L}_g{grp.index}")
        self.run_names: dict[tuple[int, int], str] = {}
        self.fused_acts: set[str] = set()
        for grp in schedule.groups:
            for ri, (i, j, op) in enumerate(grp.runs):
                if j - i > 1:
                    self.run_names[(grp.index, ri)] = nm.fresh(f"{op}{grp.index}_{ri}")
            self.fused_acts.update(grp.act_of.values())
        # a * b read only by one `+` becomes torch.addcmul (one op instead of two)
        self.folded_mul: dict[str, str] = {}
        loop_set = set(schedule.loop_nodes)
        for n in schedule.loop_nodes:
            node = g.node_map[n]
            if not OPS[node.op].sum_fold:
                continue
            for m, other in ((node.args[1], node.args[0]), (node.args[0], node.args[1])):
                mnode = g.node_map.get(m)
                if (mnode is not None and m in loop_set and OPS[mnode.op].product_fold and m not in g.states
                        and g.consumers.get(m) == [n] and not self.is_const(other) and m != other
                        and not any(self.is_const(a) for a in mnode.args) and m not in self.folded_mul):
                    self.folded_mul[m] = n
                    break

    def aux(self, owner: str, role: str) -> str:
        """A value of the generated code that is not a cell value (``enc.bias``, ``c.keys``),
        named like one so that the backward can give it gradient terms; ``ref`` reads it."""
        value = f"{owner}.{role}"  # a dot: never a cell name
        if value not in self.names.names:
            self.names.names[value] = self.names.fresh(f"{owner}_{role}")
        return value

    # ------------------------------------------------------------------ reading values
    def ref(self, name: str) -> str:
        """A value as it appears in code: constants inline as literals."""
        node = self.graph.node_map.get(name)
        if node is not None and OPS[node.op].is_literal:
            return format_number(OPS[node.op].value(node))
        return self.names[name]

    def is_const(self, name: str) -> bool:
        """Whether ``name`` is a literal node (inlined, never given a gradient)."""
        node = self.graph.node_map.get(name)
        return node is not None and OPS[node.op].is_literal

    def step_header(self, name: str, extra: str = "", tail: str = "") -> list[str]:
        """``def name(...)`` of a step function and the unpacking of its per-step, state and constant tuples."""
        lines = [f"def {name}({extra}xt, prev, consts{tail}):"]
        lines += unpack(self.ext, "xt")
        lines += unpack([self.names[prev_name(s)] for s in self.schedule.recurrent_states], "prev")
        lines += unpack(self.consts, "consts")
        return lines


def unpack(names: list[str], source: str) -> list[str]:
    """``a, b = source`` (``a, = source`` for one name; nothing for none)."""
    if not names:
        return []
    return [f"    {', '.join(names)}{',' if len(names) == 1 else ''} = {source}"]


def columns(var: str, i: int, j: int) -> str:
    """Columns i*H:j*H of a (..., B, k*H) tensor, written for reading (any leading member dimension)."""
    def times_h(k: int) -> str:
        return "0" if k == 0 else ("H" if k == 1 else f"{k} * H")

    return f"{var}[..., {times_h(i)}:{times_h(j)}]"


__all__ = ["CODEGEN_RESERVED", "GENERATED_HELPERS", "Variables", "columns", "unpack"]

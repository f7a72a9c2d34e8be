"""Code generation: a cell becomes three plain Python functions over torch ops.

* ``prologue(P, T, B, inputs, statics, inits)`` runs once per sequence. Everything that does
  not depend on a previous state is computed here for all T steps at once: every linear
  term that reads an input becomes one matmul over the whole sequence (stored in the
  layout of the in-loop matmul it feeds, as cuDNN does), input-only nodes are evaluated
  vectorised, and the fused recurrent weight matrices are assembled.
* ``step(xt, prev, consts)`` is one time step: one matmul for all linear terms that read a
  previous state, one per in-step value that feeds a linear, then the elementwise work.
* ``step_backward(d_new, xt, prev, consts, saved)`` is the hand-derived backward of ``step``.
  It leaves the weight gradients out: the runtime (``sequence.py``) computes dW for the
  whole sequence as one matmul after the loop, which is where most of the speed comes from.

The source is kept (``CellProgram.source``) and registered in ``linecache`` so a traceback
points at the generated line, and ``cellsearch cells code CELL`` prints it.
"""

from __future__ import annotations

import builtins
import keyword
import linecache
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from cellsearch.compile.kernels import HELPERS
from cellsearch.compile.params import bias_name, scale_name, weight_name
from cellsearch.dsl.equations import format_number
from cellsearch.dsl.graph import CellGraph, prev_name, unique_name
from cellsearch.dsl.hashing import canonical_hash

_RESERVED = set(keyword.kwlist) | set(dir(builtins)) | {"torch", "F", "aten", "H", "I", "S", "P", "T", "B",
                                                        "xt", "prev", "consts", "saved", "d_new", "inputs",
                                                        "statics", "inits", "self", *HELPERS}


class _Namer:
    """Predictable identifiers: a node keeps its name unless it clashes (then ``name_``)."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.names: dict[str, str] = {}

    def bind(self, value: str) -> str:
        if value not in self.names:
            name = value
            while name in _RESERVED or name in self.used:
                name += "_"
            self.used.add(name)
            self.names[value] = name
        return self.names[value]

    def fresh(self, base: str) -> str:
        return unique_name(base, self.used, _RESERVED)

    def __getitem__(self, value: str) -> str:
        return self.names[value]


@dataclass
class Group:
    """One in-loop matmul: ``out = base + arg @ W.T`` split into one chunk per member."""

    index: int
    args: tuple[str, ...]  # group 0: previous states (concatenated); others: one in-loop node
    members: tuple[str, ...]  # linear nodes, in the layout order of W's rows
    carried: tuple[bool, ...]  # member's input terms and bias live in this group's base
    base_kind: str | None = None  # "step" (varies over t), "const" or None (no base)
    weight: str = ""  # name of the fused weight in the generated code
    base: str = ""  # name of the base tensor in the generated code
    # Members read only by an activation (e.g. i_linear -> sigmoid): member -> activation node.
    act_of: dict[str, str] = field(default_factory=dict)
    # Runs of adjacent members with the same activation, applied with one call: (start, end, op).
    runs: list[tuple[int, int, str]] = field(default_factory=list)

    def run_of(self, member: str) -> tuple[int, int, str] | None:
        i = self.members.index(member)
        return next((r for r in self.runs if r[0] <= i < r[1]), None)


@dataclass
class Plan:
    """Which node runs where, and how linear terms are fused."""

    graph: CellGraph
    input_size: int
    hidden_size: int
    static_size: int
    recurrent_states: tuple[str, ...]
    hoisted_states: tuple[str, ...]
    loop_nodes: tuple[str, ...]
    hoisted_order: tuple[str, ...]  # hoisted nodes and hoisted-state prevs, dependencies first
    time_varying: frozenset[str]
    groups: list[Group] = field(default_factory=list)
    member_groups: dict[str, list[int]] = field(default_factory=dict)

    @property
    def loop_values(self) -> frozenset[str]:
        return frozenset(self.loop_nodes) | {prev_name(s) for s in self.recurrent_states}


def make_plan(graph: CellGraph, input_size: int, hidden_size: int, static_size: int | None = None) -> Plan:
    g = graph
    live = g.live
    # States whose update needs last step's value of a recurrent state run in the loop; the rest
    # (e.g. a state computed from the input alone) is computed for all steps at once. Start with
    # every state recurrent and drop those that only read prevs of dropped states.
    rec = set(g.states)
    while True:
        reach = g._reach(frozenset(prev_name(s) for s in rec))
        keep = {s for s in rec if s in reach}
        if keep == rec:
            break
        rec = keep
    recurrent_states = tuple(s for s in g.states if s in rec)
    hoisted_states = tuple(s for s in g.states if s not in rec)
    reach = g._reach(frozenset(prev_name(s) for s in recurrent_states))
    loop_nodes = tuple(n for n in g.order if n in live and n in reach)
    loop_set = set(loop_nodes)

    # Hoisted nodes: live, not in the loop. A hoisted state's prev is the state's own sequence
    # shifted by one step, so it depends on that state's node.
    hoisted_deps: dict[str, tuple[str, ...]] = {}
    for n in g.order:
        if n in live and n not in loop_set:
            hoisted_deps[n] = g.node_map[n].args
    for s in hoisted_states:
        hoisted_deps[prev_name(s)] = (s,)
    order: list[str] = []
    seen: set[str] = set()

    def visit(v: str) -> None:
        if v in seen or v not in hoisted_deps:
            return
        seen.add(v)
        for a in hoisted_deps[v]:
            visit(a)
        order.append(v)

    for v in hoisted_deps:
        visit(v)
    tv = set(g.inputs) | {prev_name(s) for s in hoisted_states}
    for v in order:
        if any(a in tv for a in hoisted_deps[v]):
            tv.add(v)
    plan = Plan(g, input_size, hidden_size, static_size if static_size is not None else hidden_size,
                recurrent_states, hoisted_states, loop_nodes, tuple(order), frozenset(tv))

    # Groups: every linear term that reads a previous state goes into group 0 (one matmul per
    # step); every in-loop node that feeds a linear gets a group of its own.
    prevs = [prev_name(s) for s in recurrent_states]
    loop_linears = [n for n in loop_nodes if g.node_map[n].op == "linear"]
    g0_args = tuple(p for p in prevs if any(p in g.node_map[L].args for L in loop_linears))
    specs: list[tuple[tuple[str, ...], list[str]]] = []
    if g0_args:
        specs.append((g0_args, [L for L in loop_linears if any(a in g0_args for a in g.node_map[L].args)]))
    node_args: list[str] = []
    for L in loop_linears:
        for a in g.node_map[L].args:
            if a in loop_set and a not in node_args:
                node_args.append(a)
    for a in sorted(node_args, key=loop_nodes.index):
        specs.append(((a,), [L for L in loop_linears if a in g.node_map[L].args]))
    carrier: dict[str, int] = {}
    for idx, (args, members) in enumerate(specs):
        for L in members:
            carrier.setdefault(L, idx)
            plan.member_groups.setdefault(L, []).append(idx)
    for idx, (args, members) in enumerate(specs):
        carried = tuple(carrier[L] == idx for L in members)
        base_kind = None
        for L, c in zip(members, carried):
            if not c:
                continue
            node = g.node_map[L]
            hoisted_args = [a for a in node.args if a not in plan.loop_values]
            if any(a in tv for a in hoisted_args):
                base_kind = "step"
            elif (hoisted_args or node.attr("bias")) and base_kind is None:
                base_kind = "const"
        plan.groups.append(Group(idx, args, tuple(members), carried, base_kind))
    for grp in plan.groups:
        _order_by_activation(g, plan, grp)
    return plan


_FUSABLE_ACTIVATIONS = ("sigmoid", "tanh", "relu")


def _order_by_activation(g: CellGraph, plan: Plan, grp: Group) -> None:
    """Put members that feed the same activation next to each other, so one call covers them.

    LSTM's [i, f, g, o] becomes [i, f, o, g]: one sigmoid over 3H columns in the forward
    step and one sigmoid_backward in the backward step instead of three each.
    """
    consumers = g.consumers
    for L in grp.members:
        readers = [c for c in consumers.get(L, []) if c in g.live]
        if (len(readers) == 1 and len(plan.member_groups[L]) == 1 and L not in g.states
                and g.node_map[readers[0]].op in _FUSABLE_ACTIVATIONS):
            grp.act_of[L] = readers[0]
    keys: list[str] = []
    for L in grp.members:
        k = g.node_map[grp.act_of[L]].op if L in grp.act_of else ""
        if k not in keys:
            keys.append(k)
    order = sorted(range(len(grp.members)), key=lambda i: (
        (keys.index(g.node_map[grp.act_of[grp.members[i]]].op) if grp.members[i] in grp.act_of else len(keys)), i))
    grp.members = tuple(grp.members[i] for i in order)
    grp.carried = tuple(grp.carried[i] for i in order)
    i = 0
    while i < len(grp.members):
        L = grp.members[i]
        if L not in grp.act_of:
            i += 1
            continue
        op = g.node_map[grp.act_of[L]].op
        j = i
        while j < len(grp.members) and grp.members[j] in grp.act_of \
                and g.node_map[grp.act_of[grp.members[j]]].op == op:
            j += 1
        grp.runs.append((i, j, op))
        i = j


@dataclass
class _Term:
    sign: int  # +1 / -1
    expr: str  # an expression, or for matmul terms the left factor
    mm: str | None = None  # right factor of a matmul term (expr @ mm)
    simple: bool = False  # expr is a plain variable


class CellProgram:
    """The generated functions of one cell at given sizes, with the metadata the runtime needs."""

    def __init__(self, graph: CellGraph, input_size: int, hidden_size: int, static_size: int | None = None):
        graph.validate(warn=False)
        graph.check_sizes(input_size, hidden_size, static_size)
        self.graph = graph
        self.plan = plan = make_plan(graph, input_size, hidden_size, static_size)
        self.namer = namer = _Namer()
        for v in [*graph.inputs, *graph.static, *graph.prev_names, *(n.name for n in graph.nodes)]:
            namer.bind(v)
        for grp in plan.groups:
            grp.weight = namer.fresh(f"W{grp.index}")
            if grp.base_kind:
                grp.base = namer.fresh(f"base{grp.index}")
        self.loop_diags = [n for n in plan.loop_nodes if graph.node_map[n].op == "diag"]

        # Values computed in the prologue that the loop reads.
        loop_reads: list[str] = []
        for n in plan.loop_nodes:
            node = graph.node_map[n]
            if node.op == "linear":
                continue  # hoisted linear arguments go into the group bases
            for a in node.args:
                if a not in plan.loop_values and graph.node_map.get(a, None) is not None \
                        and graph.node_map[a].op == "const":
                    continue
                if a not in plan.loop_values and a not in loop_reads:
                    loop_reads.append(a)
        self.ext: list[str] = []  # per-step tensors, (T, B, ...) unbound along T
        self.consts: list[str] = []  # tensors constant over the steps
        self.const_kinds: list[str] = []  # "value" (gets a gradient per step), "weight", "scale"
        for grp in plan.groups:
            if grp.base_kind == "step":
                self.ext.append(grp.base)
            elif grp.base_kind == "const":
                self.consts.append(grp.base)
                self.const_kinds.append("value")
        for a in loop_reads:
            if a in plan.time_varying:
                self.ext.append(namer[a])
            else:
                self.consts.append(namer[a])
                self.const_kinds.append("value")
        for grp in plan.groups:
            self.consts.append(grp.weight)
            self.const_kinds.append("weight")
        for n in self.loop_diags:
            self.consts.append(namer.fresh(f"p_{n}"))
            self.const_kinds.append("scale")
        self.diag_param_var = {n: self.consts[len(self.consts) - len(self.loop_diags) + i]
                               for i, n in enumerate(self.loop_diags)}

        self.saved: list[str] = []  # loop nodes the backward reads, in order
        backward_src = self._gen_backward() if plan.recurrent_states else ""
        step_src = self._gen_step() if plan.recurrent_states else ""
        prologue_src = self._gen_prologue()
        header = (f"# generated by cellsearch for cell {graph.name!r} (hash {canonical_hash(graph)})\n"
                  f"# sizes: input I={input_size}, hidden H={hidden_size}, static S={plan.static_size}\n")
        self.source = header + "\n\n".join(s for s in (prologue_src, step_src, backward_src) if s) + "\n"
        self.filename = f"<cellsearch-generated {graph.name} {canonical_hash(graph)} I{input_size} H{hidden_size}>"
        code = compile(self.source, self.filename, "exec")
        linecache.cache[self.filename] = (len(self.source), None, self.source.splitlines(True), self.filename)
        namespace = {"torch": torch, "F": F, "aten": torch.ops.aten, **HELPERS, "H": hidden_size, "I": input_size,
                     "S": plan.static_size}
        exec(code, namespace)
        self.namespace = namespace
        self.pack_weights = True  # the runtime may hand the step functions prepacked weights
        self.prologue = namespace["prologue"]
        self.step = namespace.get("step")
        self.step_backward = namespace.get("step_backward")

    # ------------------------------------------------------------------ helpers
    def _ref(self, name: str) -> str:
        """A value as it appears in code: constants inline as literals."""
        node = self.graph.node_map.get(name)
        if node is not None and node.op == "const":
            return format_number(node.attr("value"))
        return self.namer[name]

    def _is_const(self, name: str) -> bool:
        node = self.graph.node_map.get(name)
        return node is not None and node.op == "const"

    def _expr(self, name: str, param=None) -> str:
        """Forward expression of a non-linear node."""
        node = self.graph.node_map[name]
        a = [self._ref(x) for x in node.args]
        op = node.op
        if op == "add":
            return f"{a[0]} + {a[1]}"
        if op == "sub":
            return f"{a[0]} - {a[1]}"
        if op == "mul":
            return f"{a[0]} * {a[1]}"
        if op == "neg":
            return f"-{a[0]}"
        if op == "one_minus":
            return f"1 - {a[0]}"
        if op == "blend":  # z * a + (1 - z) * b, as one lerp: b + z * (a - b)
            if self._is_const(node.args[1]) or self._is_const(node.args[2]):
                return f"{a[0]} * {a[1]} + (1 - {a[0]}) * {a[2]}"  # lerp needs tensors there
            return f"torch.lerp({a[2]}, {a[1]}, {a[0]})"
        if op == "diag":
            return f"{param} * {a[0]}"
        if op in ("tanh", "sigmoid", "relu"):
            return f"torch.{op}({a[0]})"
        if op == "leaky_relu":
            return f"F.leaky_relu({a[0]}, {node.attr('slope')!r})"
        if op == "identity":
            return a[0]
        raise NotImplementedError(op)  # pragma: no cover

    @staticmethod
    def _unpack(names: list[str], source: str) -> list[str]:
        if not names:
            return []
        return [f"    {', '.join(names)}{',' if len(names) == 1 else ''} = {source}"]

    def _weight_sum(self, node_name: str, arg: str) -> str:
        node = self.graph.node_map[node_name]
        ws = [f"P.{weight_name(node_name, k)}" for k, a in enumerate(node.args) if a == arg]
        return " + ".join(ws) if len(ws) == 1 else "(" + " + ".join(ws) + ")"

    def _size_expr(self, name: str) -> str:
        kind = self.graph.leaf_kinds.get(name)
        return {"input": "I", "static": "S"}.get(kind, "H")

    # ------------------------------------------------------------------ prologue
    def _gen_prologue(self) -> str:
        g, plan, nm = self.graph, self.plan, self.namer
        lines = ["def prologue(P, T, B, inputs, statics, inits):",
                 '    """Everything that does not depend on a previous state, for all steps at once."""']
        lines += self._unpack([nm[x] for x in g.inputs], "inputs")
        lines += self._unpack([nm[x] for x in g.static], "statics")
        init_names = [nm.fresh(f"{s}_init") for s in plan.hoisted_states]
        lines += self._unpack(init_names, "inits")
        init_of = dict(zip(plan.hoisted_states, init_names))
        for v in plan.hoisted_order:
            if v in g.node_map:
                node = g.node_map[v]
                if node.op == "const":
                    continue
                if node.op == "linear":
                    terms = []
                    for k, a in enumerate(node.args):
                        if a in node.args[:k]:
                            continue
                        w = self._weight_sum(v, a)
                        b = f", P.{bias_name(v)}" if (not terms and node.attr("bias")) else ""
                        terms.append(f"F.linear({self._ref(a)}, {w}{b})")
                    lines.append(f"    {nm[v]} = {' + '.join(terms)}")
                elif node.op == "diag":
                    lines.append(f"    {nm[v]} = {self._expr(v, f'P.{scale_name(v)}')}")
                else:
                    lines.append(f"    {nm[v]} = {self._expr(v)}")
            else:  # the prev of a hoisted state: its sequence shifted by one step
                s = g.state_of_prev(v)
                seq = nm[s] if s in plan.time_varying else f"{nm[s]}.expand(T, B, H)"
                lines.append(f"    {nm[v]} = torch.cat(({init_of[s]}.unsqueeze(0), {seq}[:-1]), 0)")
        for grp in plan.groups:
            lines += self._gen_group_weights(grp)
        ext = ", ".join(self.ext) + ("," if len(self.ext) == 1 else "")
        consts = []
        for name, kind in zip(self.consts, self.const_kinds):
            if kind == "scale":
                node = next(n for n, var in self.diag_param_var.items() if var == name)
                consts.append(f"P.{scale_name(node)}")
            else:
                consts.append(name)
        const_txt = ", ".join(consts) + ("," if len(consts) == 1 else "")
        seqs = []
        for s in plan.hoisted_states:
            seqs.append(nm[s] if s in plan.time_varying else f"{nm[s]}.expand(T, B, H)")
        seq_txt = ", ".join(seqs) + ("," if len(seqs) == 1 else "")
        lines.append(f"    return ({ext}), ({const_txt}), ({seq_txt})")
        return "\n".join(lines)

    def _gen_group_weights(self, grp: Group) -> list[str]:
        g = self.graph
        lines = [f"    # group {grp.index}: {' + '.join(self._ref(a) for a in grp.args)} -> "
                 f"[{', '.join(grp.members)}]"]
        ref_w = f"P.{weight_name(grp.members[0], 0)}"
        rows = []
        for L in grp.members:
            node = g.node_map[L]
            cols = []
            for a in grp.args:
                if a in node.args:
                    cols.append(self._weight_sum(L, a))
                else:
                    cols.append(f"{ref_w}.new_zeros(H, {self._size_expr(a)})")
            rows.append(cols[0] if len(cols) == 1 else f"torch.cat(({', '.join(cols)}), 1)")
        w = rows[0] if len(rows) == 1 else f"torch.cat(({', '.join(rows)}), 0)"
        lines.append(f"    {grp.weight} = {w}")
        if grp.base_kind:
            hoisted_args: list[str] = []
            for L, c in zip(grp.members, grp.carried):
                if c:
                    for a in g.node_map[L].args:
                        if a not in self.plan.loop_values and a not in hoisted_args:
                            hoisted_args.append(a)
            biases = []
            any_bias = False
            for L, c in zip(grp.members, grp.carried):
                if c and g.node_map[L].attr("bias"):
                    biases.append(f"P.{bias_name(L)}")
                    any_bias = True
                else:
                    biases.append(f"{ref_w}.new_zeros(H)")
            bias = (biases[0] if len(biases) == 1 else f"torch.cat(({', '.join(biases)}), 0)") if any_bias else None
            terms = []
            for a in hoisted_args:
                blocks = []
                for L, c in zip(grp.members, grp.carried):
                    if c and a in g.node_map[L].args:
                        blocks.append(self._weight_sum(L, a))
                    else:
                        blocks.append(f"{ref_w}.new_zeros(H, {self._size_expr(a)})")
                wa = blocks[0] if len(blocks) == 1 else f"torch.cat(({', '.join(blocks)}), 0)"
                b = f", {bias}" if (bias and not terms) else ""
                terms.append(f"F.linear({self._ref(a)}, {wa}{b})")
            lines.append(f"    {grp.base} = {' + '.join(terms) if terms else bias}")
        return lines

    # ------------------------------------------------------------------ forward step
    def _step_header(self, name: str, extra: str = "", tail: str = "") -> list[str]:
        nm, plan = self.namer, self.plan
        lines = [f"def {name}({extra}xt, prev, consts{tail}):"]
        lines += self._unpack(self.ext, "xt")
        lines += self._unpack([nm[prev_name(s)] for s in plan.recurrent_states], "prev")
        lines += self._unpack(self.consts, "consts")
        return lines

    def _prepare_step_names(self) -> None:
        """Names shared by step and step_backward: group chunks, activation runs, fused muls."""
        g, plan, nm = self.graph, self.plan, self.namer
        self.part_names: dict[tuple[str, int], str] = {}
        for grp in plan.groups:
            for L in grp.members:
                if len(plan.member_groups[L]) == 1:
                    self.part_names[(L, grp.index)] = nm[L]
                else:
                    self.part_names[(L, grp.index)] = nm.fresh(f"{L}_g{grp.index}")
        self.run_names: dict[tuple[int, int], str] = {}
        self.fused_acts: set[str] = set()
        for grp in plan.groups:
            for ri, (i, j, op) in enumerate(grp.runs):
                if j - i > 1:
                    self.run_names[(grp.index, ri)] = nm.fresh(f"{op}{grp.index}_{ri}")
            self.fused_acts.update(grp.act_of.values())
        # a * b read only by one `+` becomes torch.addcmul (one op instead of two)
        self.folded_mul: dict[str, str] = {}
        loop_set = set(plan.loop_nodes)
        for n in plan.loop_nodes:
            node = g.node_map[n]
            if node.op != "add":
                continue
            for m, other in ((node.args[1], node.args[0]), (node.args[0], node.args[1])):
                mnode = g.node_map.get(m)
                if (mnode is not None and m in loop_set and mnode.op == "mul" and m not in g.states
                        and g.consumers.get(m) == [n] and not self._is_const(other) and m != other
                        and not any(self._is_const(a) for a in mnode.args) and m not in self.folded_mul):
                    self.folded_mul[m] = n
                    break

    @staticmethod
    def _cols(var: str, i: int, j: int) -> str:
        """Columns i*H:j*H of a (B, k*H) tensor, written for reading."""
        def times_h(k: int) -> str:
            return "0" if k == 0 else ("H" if k == 1 else f"{k} * H")

        return f"{var}[:, {times_h(i)}:{times_h(j)}]"

    def _gen_step(self) -> str:
        g, plan, nm = self.graph, self.plan, self.namer
        lines = self._step_header("step")
        lines.insert(1, '    """One time step: new states, and the values step_backward needs."""')
        emitted: set[int] = set()
        fold_into = {n: m for m, n in self.folded_mul.items()}
        for n in plan.loop_nodes:
            node = g.node_map[n]
            if node.op == "const" or n in self.fused_acts or n in self.folded_mul:
                continue
            if node.op == "linear":
                for gi in plan.member_groups[n]:
                    if gi not in emitted:
                        emitted.add(gi)
                        lines += self._emit_group(plan.groups[gi])
                parts = [self.part_names[(n, gi)] for gi in plan.member_groups[n]]
                if len(parts) > 1:
                    lines.append(f"    {nm[n]} = {' + '.join(parts)}")
            elif node.op == "diag":
                lines.append(f"    {nm[n]} = {self._expr(n, self.diag_param_var[n])}")
            elif n in fold_into:
                m = fold_into[n]
                other = node.args[0] if node.args[1] == m else node.args[1]
                b, c = (self._ref(a) for a in g.node_map[m].args)
                lines.append(f"    {nm[n]} = torch.addcmul({self._ref(other)}, {b}, {c})")
            else:
                lines.append(f"    {nm[n]} = {self._expr(n)}")
        new = ", ".join(nm[s] for s in plan.recurrent_states) + ("," if len(plan.recurrent_states) == 1 else "")
        saved = ", ".join(self.saved) + ("," if len(self.saved) == 1 else "")
        lines.append(f"    return ({new}), ({saved})")
        return "\n".join(lines)

    def _emit_group(self, grp: Group) -> list[str]:
        nm = self.namer
        lines = [f"    # group {grp.index}: [{', '.join(grp.members)}] from {', '.join(grp.args)}"]
        if len(grp.args) == 1:
            a = self._ref(grp.args[0])
        else:
            a = nm.fresh(f"a{grp.index}")
            lines.append(f"    {a} = torch.cat(({', '.join(self._ref(x) for x in grp.args)}), 1)")
        if grp.base_kind:
            mm = f"linear_add({a}, {grp.weight}, {grp.base})"
        else:
            mm = f"linear({a}, {grp.weight})"
        parts = [self.part_names[(L, grp.index)] for L in grp.members]
        if len(parts) == 1:
            out = parts[0]
            lines.append(f"    {out} = {mm}")
        else:
            out = nm.fresh(f"lin{grp.index}")
            lines.append(f"    {out} = {mm}")
            if not grp.runs:
                lines.append(f"    {', '.join(parts)} = {out}.chunk({len(parts)}, 1)")
                return lines
        for ri, (i, j, op) in enumerate(grp.runs):
            acts = [nm[grp.act_of[L]] for L in grp.members[i:j]]
            cols = out if len(parts) == 1 else self._cols(out, i, j)
            if j - i == 1:
                lines.append(f"    {acts[0]} = torch.{op}({cols})")
            else:
                run = self.run_names[(grp.index, ri)]
                lines.append(f"    {run} = torch.{op}({cols})")
                lines.append(f"    {', '.join(acts)} = {run}.chunk({j - i}, 1)")
        if len(parts) > 1:
            for k, L in enumerate(grp.members):
                if L not in grp.act_of:
                    lines.append(f"    {parts[k]} = {self._cols(out, k, k + 1)}")
        return lines

    # ------------------------------------------------------------------ backward step
    def _gen_backward(self) -> str:
        g, plan, nm = self.graph, self.plan, self.namer
        self._prepare_step_names()
        loop_set = set(plan.loop_nodes)
        prevs = {prev_name(s) for s in plan.recurrent_states}
        needed: list[str] = []

        def use(v: str) -> str:
            """Reference a forward value inside the backward (saving loop nodes for it)."""
            if v in loop_set and not self._is_const(v) and nm[v] not in needed:
                needed.append(nm[v])
            return self._ref(v)

        def use_var(var: str) -> str:
            if var not in needed:
                needed.append(var)
            return var

        terms: dict[str, list[_Term]] = {}
        grad_var: dict[str, str] = {}
        body: list[str] = []
        defined_at: dict[str, tuple[int, str, str]] = {}  # gradient variable -> (body line, expression, node)
        self._defined_at = defined_at

        def add(target: str, term: _Term) -> None:
            if self._is_const(target):
                return
            terms.setdefault(target, []).append(term)

        def finalize(v: str) -> str | None:
            ts = terms.pop(v, [])
            if not ts:
                return None
            mms = [t for t in ts if t.mm is not None and t.sign > 0]
            rest = [t for t in ts if not (t.mm is not None and t.sign > 0)]
            if len(ts) == 1 and ts[0].sign > 0 and ts[0].simple:
                grad_var[v] = ts[0].expr  # alias: no op
                return grad_var[v]
            name = nm.fresh(f"d_{v}")
            expr = _sum_expr(rest) if rest else None
            if mms:
                first = mms[0]
                if expr is None:
                    expr = f"matmul_w({first.expr}, {first.mm})"
                else:
                    expr = f"add_matmul_w({expr}, {first.expr}, {first.mm})"
                for t in mms[1:]:
                    expr = f"add_matmul_w({expr}, {t.expr}, {t.mm})"
            body.append(f"    {name} = {expr}")
            grad_var[v] = name
            defined_at[name] = (len(body) - 1, expr, v)
            return name

        d_new = [nm.fresh(f"dn_{s}") for s in plan.recurrent_states]
        for s, dn in zip(plan.recurrent_states, d_new):
            add(s, _Term(1, dn, simple=True))
        self.dbuf = [nm.fresh(f"d_lin{grp.index}") for grp in plan.groups]
        diag_terms: dict[str, str] = {}
        earliest_member = {grp.index: min(grp.members, key=plan.loop_nodes.index) for grp in plan.groups}

        for n in reversed(plan.loop_nodes):
            node = g.node_map[n]
            if node.op == "const":
                continue
            d = finalize(n)
            if d is not None and n not in self.fused_acts:
                self._grad_rule(n, d, add, use, body, diag_terms)
            for grp in plan.groups:
                if earliest_member[grp.index] == n:
                    self._group_backward(grp, grad_var, add, use, use_var, body)
        # Gradients that leave the step: previous states, per-step and constant inputs.
        d_prev = [finalize(prev_name(s)) or "None" for s in plan.recurrent_states]
        for v in list(terms):
            if v not in prevs:
                finalize(v)
        rev = {var: v for v, var in self.namer.names.items()}
        bases = {grp.base for grp in plan.groups if grp.base}
        d_ext = ["None" if e in bases else (grad_var.get(rev[e]) or "None") for e in self.ext]
        d_const = ["None" if (kind != "value" or c in bases) else (grad_var.get(rev[c]) or "None")
                   for c, kind in zip(self.consts, self.const_kinds)]
        d_diags = [diag_terms.get(n, "None") for n in self.loop_diags]
        self.saved = needed

        lines = self._step_header("step_backward", "d_new, ", ", saved, d_lin")
        lines.insert(1, '    """Gradients of one step. The pre-activation gradients of each fused matmul '
                        'go into d_lin\n    (views of whole-sequence buffers); weight gradients are left '
                        'to the runtime."""')
        lines += self._unpack(self.saved, "saved")
        lines += self._unpack(d_new, "d_new")
        lines += self._unpack(self.dbuf, "d_lin")
        lines += body

        def tup(xs: list[str]) -> str:
            return "(" + ", ".join(xs) + ("," if len(xs) == 1 else "") + ")"

        lines.append(f"    return {tup(d_prev)}, {tup(d_ext)}, {tup(d_const)}, {tup(d_diags)}")
        return "\n".join(lines)

    def _grad_rule(self, n: str, d: str, add, use, body: list[str], diag_terms: dict[str, str]) -> None:
        """Add the gradient contributions of node ``n`` (gradient ``d``) to its arguments."""
        node = self.graph.node_map[n]
        args, op = node.args, node.op
        if op in ("add", "identity"):
            for a in args:
                add(a, _Term(1, d, simple=True))
        elif op == "sub":
            add(args[0], _Term(1, d, simple=True))
            add(args[1], _Term(-1, d, simple=True))
        elif op in ("neg", "one_minus"):
            add(args[0], _Term(-1, d, simple=True))
        elif op == "mul":
            add(args[0], _Term(1, f"{d} * {use(args[1])}"))
            add(args[1], _Term(1, f"{d} * {use(args[0])}"))
        elif op == "blend":
            z, a, b = args
            if not self._is_const(z):
                add(z, _Term(1, f"{d} * ({use(a)} - {use(b)})"))
            t = self.namer.fresh(f"d_{n}_z")
            body.append(f"    {t} = {d} * {use(z)}")
            add(a, _Term(1, t, simple=True))
            add(b, _Term(1, f"{d} - {t}"))
        elif op == "diag":
            add(args[0], _Term(1, f"{d} * {self.diag_param_var[n]}"))
            diag_terms[n] = f"{d} * {use(args[0])}"
        elif op in ("tanh", "sigmoid", "relu"):
            add(args[0], _Term(1, _act_backward(op, d, use(n))))
        elif op == "leaky_relu":
            add(args[0], _Term(1, f"aten.leaky_relu_backward({d}, {use(args[0])}, {node.attr('slope')!r}, False)"))
        elif op == "linear":
            pass  # gradients of linear nodes are gathered per group
        else:  # pragma: no cover
            raise NotImplementedError(op)

    def _group_backward(self, grp: Group, grad_var: dict, add, use, use_var, body: list[str]) -> None:
        """Write the group's pre-activation gradient into its buffer and pass it to its argument."""
        nm = self.namer
        dl = self.dbuf[grp.index]
        whole = len(grp.members) == 1
        for ri, (i, j, op) in enumerate(grp.runs):
            acts = [grp.act_of[L] for L in grp.members[i:j]]
            grads = [grad_var.get(a) or f"torch.zeros_like({use(a)})" for a in acts]
            slot = dl if whole else nm.fresh(f"{dl}_{ri}")
            if not whole:
                body.append(f"    {slot} = {self._cols(dl, i, j)}")
            if j - i == 1:
                body.append(f"    {_act_backward(op, grads[0], use(acts[0]), out=slot)}")
            else:
                run = use_var(self.run_names[(grp.index, ri)])
                body.append(f"    torch.cat(({', '.join(grads)}), 1, out={slot})")
                body.append(f"    {_act_backward(op, slot, run, out=slot)}")
        for k, L in enumerate(grp.members):
            if L in grp.act_of:
                continue
            slot = dl if whole else self._cols(dl, k, k + 1)
            gv = grad_var.get(L)
            # only when the variable is L's own gradient (not an alias another node also reads)
            # and no other group reads it too
            line = self._defined_at.get(gv) if gv and len(self.plan.member_groups[L]) == 1 else None
            if line is not None and line[2] != L:
                line = None
            factors = line[1].split(" * ") if line else []
            if len(factors) == 2 and all(f.isidentifier() for f in factors):
                # `d_L = a * b` read only here: compute it straight into the buffer
                body[line[0]] = f"    torch.mul({factors[0]}, {factors[1]}, out={slot})"
            else:
                body.append(f"    {slot}.copy_({gv})" if gv else f"    {slot}.zero_()")
        if len(grp.args) == 1:
            add(grp.args[0], _Term(1, dl, mm=grp.weight))
        else:
            da = nm.fresh(f"d_a{grp.index}")
            body.append(f"    {da} = matmul_w({dl}, {grp.weight})")
            pieces = [nm.fresh(f"d_{a}_g{grp.index}") for a in grp.args]
            body.append(f"    {', '.join(pieces)} = {da}.split(H, 1)")
            for a, p in zip(grp.args, pieces):
                add(a, _Term(1, p, simple=True))
        for a in grp.args:
            if a in self.plan.loop_nodes:
                use(a)  # the runtime needs the argument of every step for dW


def _act_backward(op: str, grad: str, out_value: str, out: str | None = None) -> str:
    """Backward of an activation from its output value (optionally written into ``out``)."""
    dest = f", grad_input={out}" if out else ""
    if op == "relu":
        return f"aten.threshold_backward({grad}, {out_value}, 0{dest})"
    return f"aten.{op}_backward({grad}, {out_value}{dest})"


def _sum_expr(ts: list[_Term]) -> str:
    pos = [t for t in ts if t.sign > 0]
    neg = [t for t in ts if t.sign < 0]
    if pos:
        out = pos[0].expr
        rest = pos[1:]
    else:
        first = neg.pop(0)
        out = f"-{first.expr}" if first.simple else f"-({first.expr})"
        rest = []
    for t in rest:
        out += f" + {t.expr}"
    for t in neg:
        out += f" - {t.expr}" if t.simple or " " not in t.expr else f" - ({t.expr})"
    return out

"""Scheduling: which values the generated step computes, which are hoisted, how linears fuse.

A cell's live nodes split in two. Nodes that depend (transitively) on the previous value of a
*recurrent* state run in the step loop; everything else, including a state computed from the
inputs alone, is *hoisted*: computed once for all T steps before the loop. Linear terms in the
loop are fused into ``Group``s, one matmul each: group 0 takes every linear term that reads a
previous state, and every in-loop node that feeds a linear gets a group of its own. Members
that only feed the same activation are ordered next to each other so one call covers them.

(This is the compiler's own schedule of a cell, not the search's evaluation plan.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cellsearch.dsl.graph import CellGraph, prev_name
from cellsearch.ops.registry import OPS


@dataclass
class Group:
    """One in-loop matmul: ``out = base + arg @ W.T`` split into one chunk per member."""

    index: int
    args: tuple[str, ...]  # group 0: previous states (concatenated); others: one in-loop node
    members: tuple[str, ...]  # linear nodes, in the layout order of W's rows
    carried: tuple[bool, ...]  # member's input terms and bias live in this group's base
    base_kind: str | None = None  # "step" (varies over t), "fixed" (constant over t) or None (no base)
    weight: str = ""  # name of the fused weight in the generated code
    base: str = ""  # name of the base tensor in the generated code
    # Members read only by an activation (e.g. i_linear -> sigmoid): member -> activation node.
    act_of: dict[str, str] = field(default_factory=dict)
    # Runs of adjacent members with the same activation, applied with one call: (start, end, op).
    runs: list[tuple[int, int, str]] = field(default_factory=list)

    def run_of(self, member: str) -> tuple[int, int, str] | None:
        """The run (start, end, activation op) of adjacent members that ``member`` lies in, or None."""
        i = self.members.index(member)
        return next((r for r in self.runs if r[0] <= i < r[1]), None)


@dataclass
class Schedule:
    """Which node runs where (in the step loop or hoisted before it), and how linear terms are fused."""

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
        """The values of the step: the loop's nodes and the previous values of the recurrent states."""
        return frozenset(self.loop_nodes) | {prev_name(s) for s in self.recurrent_states}


def make_schedule(graph: CellGraph, input_size: int, hidden_size: int, static_size: int | None = None) -> Schedule:
    """Split ``graph``'s live nodes into loop and hoisted ones and fuse the loop's linear terms."""
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
    schedule = Schedule(g, input_size, hidden_size, static_size if static_size is not None else hidden_size,
                        recurrent_states, hoisted_states, loop_nodes, tuple(order), frozenset(tv))

    # Groups: every linear term that reads a previous state goes into group 0 (one matmul per
    # step); every in-loop node that feeds a linear gets a group of its own.
    prevs = [prev_name(s) for s in recurrent_states]
    loop_linears = [n for n in loop_nodes if OPS[g.node_map[n].op].is_matmul]
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
            schedule.member_groups.setdefault(L, []).append(idx)
    for idx, (args, members) in enumerate(specs):
        carried = tuple(carrier[L] == idx for L in members)
        base_kind = None
        for L, c in zip(members, carried):
            if not c:
                continue
            node = g.node_map[L]
            hoisted_args = [a for a in node.args if a not in schedule.loop_values]
            if any(a in tv for a in hoisted_args):
                base_kind = "step"
            elif (hoisted_args or node.attr("bias")) and base_kind is None:
                base_kind = "fixed"
        schedule.groups.append(Group(idx, args, tuple(members), carried, base_kind))
    for grp in schedule.groups:
        _order_by_activation(g, schedule, grp)
    return schedule


def _order_by_activation(g: CellGraph, schedule: Schedule, grp: Group) -> None:
    """Put members that feed the same activation next to each other, so one call covers them.

    LSTM's [i, f, g, o] becomes [i, f, o, g]: one sigmoid over 3H columns in the forward
    step and one sigmoid_backward in the backward step instead of three each.
    """
    consumers = g.consumers
    for L in grp.members:
        readers = [c for c in consumers.get(L, []) if c in g.live]
        if (len(readers) == 1 and len(schedule.member_groups[L]) == 1 and L not in g.states
                and OPS[g.node_map[readers[0]].op].fuses_after_matmul):
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


__all__ = ["Group", "Schedule", "make_schedule"]

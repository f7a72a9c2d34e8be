"""Helpers the search spaces share: naming, pruning, renaming and the "is this cell useful" checks.

``CellGraph.validate`` accepts every well-formed cell, including ones no search should spend a
training run on. A generated cell must also be *useful* (``check_useful``):

* the output reads the per-step input (through any number of steps and states);
* the output is recurrent: some state's previous value reaches it;
* every state influences the output, and every state other than the output reads its previous
  value (a state that reads nothing from last step is just a node).

``finish`` runs these checks, then ``check_cell`` (validation plus code generation) at the sizes
the space promises, and names the cell after its hash.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from cellsearch.dsl.graph import CellGraph, Node, prev_name, unique_name
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.errors import CellError
from cellsearch.spaces.base import InvalidCandidate, check_cell

# Sizes every generated cell is compiled at: input 6 != hidden 4 where a space promises that
# the input size may differ from the hidden size (tiny, so the compile check is cheap).
CHECK_INPUT_SIZE = 6
CHECK_HIDDEN_SIZE = 4


class NodeList:
    """Accumulates nodes with unique names (``fresh`` adds a counter where a name is taken)."""

    def __init__(self, taken: Iterable[str] = ()):
        self.nodes: list[Node] = []
        self.taken: set[str] = set(taken)

    def fresh(self, base: str) -> str:
        """``base`` or ``base1``, ``base2``, ...: the first name not yet taken, which it then takes."""
        return unique_name(base, self.taken)

    def add(self, name: str, op: str, args: Iterable[str], attrs: dict[str, Any] | None = None, *,
            auto: bool = False, exact: bool = False) -> str:
        """Add ``name = op(*args)``; ``exact`` insists on the name (it must be free)."""
        if exact:
            self.taken.add(name)  # names the caller reserved up front (states, positions)
        else:
            name = self.fresh(name)
        self.nodes.append(Node.make(name, op, args, attrs, auto=auto))
        return name


def prune(graph: CellGraph) -> CellGraph:
    """The cell without dead nodes (nodes no state depends on)."""
    live = graph.live
    if all(n.name in live for n in graph.nodes):
        return graph
    return graph.with_nodes(n for n in graph.nodes if n.name in live)


def rename(graph: CellGraph, mapping: Mapping[str, str]) -> CellGraph:
    """The same cell with nodes, states (and their ``*_prev``) renamed by ``mapping``."""
    full = dict(mapping)
    for s in graph.states:
        if s in mapping:
            full[prev_name(s)] = prev_name(mapping[s])

    def r(name: str) -> str:
        return full.get(name, name)

    nodes = [Node(r(n.name), n.op, tuple(r(a) for a in n.args), n.attrs, n.auto) for n in graph.nodes]
    return graph.with_nodes(nodes, states=tuple(r(s) for s in graph.states), output=r(graph.output))


def ancestors(graph: CellGraph) -> dict[str, frozenset[str]]:
    """Node name → every node and leaf it reads, directly or not, within one step."""
    out: dict[str, frozenset[str]] = {}
    for name in graph.order:
        acc: set[str] = set()
        for a in graph.node_map[name].args:
            acc.add(a)
            acc |= out.get(a, frozenset())
        out[name] = frozenset(acc)
    return out


def relevant_states(graph: CellGraph, anc: dict[str, frozenset[str]] | None = None) -> tuple[set[str], set[str]]:
    """(states whose value reaches the output over time, everything those states read)."""
    anc = anc if anc is not None else ancestors(graph)
    prev_of = {prev_name(s): s for s in graph.states}
    rel = {graph.output}
    stack = [graph.output]
    deps: set[str] = set()
    while stack:
        s = stack.pop()
        reads = anc.get(s, frozenset())
        deps |= reads
        for a in reads:
            t = prev_of.get(a) or (a if a in graph.states else None)
            if t is not None and t not in rel:
                rel.add(t)
                stack.append(t)
    return rel, deps


def check_useful(graph: CellGraph) -> None:
    """Raise InvalidCandidate unless the cell is worth training (see module docstring)."""
    rel, deps = relevant_states(graph)
    if not any(i in deps for i in graph.inputs):
        raise InvalidCandidate("the output never reads the input")
    if not any(p in deps for p in graph.prev_names):
        raise InvalidCandidate("the cell is not recurrent: no previous state reaches the output")
    for s in graph.states:
        if s not in rel:
            raise InvalidCandidate(f"state '{s}' does not influence the output")
        if s != graph.output and prev_name(s) not in deps:
            raise InvalidCandidate(f"state '{s}' never reads its previous value '{prev_name(s)}'")


def elementwise_input_uses(graph: CellGraph) -> int:
    """How many live argument slots read a per-step input outside ``linear`` (needs I = H)."""
    inputs = set(graph.inputs) | set(graph.static)
    live = graph.live
    return sum(1 for n in graph.nodes if n.name in live and n.op != "linear" for a in n.args if a in inputs)


def finish(graph: CellGraph, space: str, *, any_input_size: bool = True, source: str = "",
           description: str = "") -> CellGraph:
    """Prune, check usefulness, compile-check and name a generated cell (InvalidCandidate if bad)."""
    graph = quick_check(graph)
    input_size = CHECK_INPUT_SIZE if any_input_size else CHECK_HIDDEN_SIZE
    check_cell(graph, input_size, CHECK_HIDDEN_SIZE)
    h = canonical_hash(graph)
    changes: dict[str, Any] = {"name": f"{space}_{h[:8]}"}
    if source:
        changes["source"] = source
    if description:
        changes["description"] = description
    # equations read top to bottom: every node after the ones it reads (mutations can reorder)
    nodes = [graph.node_map[n] for n in graph.order]
    return graph.with_nodes(nodes, **changes)


def quick_check(graph: CellGraph) -> CellGraph:
    """Validation and usefulness without compiling (for intermediate steps); prunes first."""
    graph = prune(graph)
    try:
        graph.validate(warn=False)
    except CellError as exc:
        raise InvalidCandidate(f"generated cell is invalid: {exc.reason}") from None
    check_useful(graph)
    return graph

"""A canonical structural hash: equal for cells that differ only by node names or by the
argument order of commutative ops, different otherwise (up to hash collisions).

Nodes are hashed bottom-up (a Merkle hash of op, attributes and children, children sorted
for commutative ops). The previous value of a state is a leaf whose label is the hash of
that state's update, so the labels are refined Weisfeiler–Lehman style for as many rounds as
there are states; the result depends only on structure. Dead nodes do not count.

Every node also hashes how often live nodes read it, so sharing shows: ``a + a`` with one
``a = linear(x)`` (one weight matrix) is a different cell from ``linear(x) + linear(x)``
(two), although both unfold to the same expression tree. (Sharing a parameter-free node,
``t * t`` with ``t = tanh(x)`` against ``tanh(x) * tanh(x)``, changes the hash too: the
hash is structural, it does not eliminate common sub-expressions.)
"""

from __future__ import annotations

import hashlib

from cellsearch.dsl.graph import CellGraph, prev_name
from cellsearch.dsl.ops import OPS

HASH_LENGTH = 16  # hex digits; 64 bits is plenty to deduplicate a search's candidates


def _h(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _canonical_attrs(attrs: tuple) -> tuple:
    # -0.0 == 0.0, so nodes that compare equal must hash equal ("0" is also how both print)
    return tuple((k, v + 0.0 if isinstance(v, float) else v) for k, v in attrs)


def node_hashes(graph: CellGraph) -> dict[str, str]:
    """Structural hash of every live node (after the state labels have converged)."""
    labels: dict[str, str] = {f: f"input{i}" for i, f in enumerate(graph.inputs)}
    labels.update({f: f"static{i}" for i, f in enumerate(graph.static)})
    labels.update({f: f"memory{i}" for i, f in enumerate(graph.memory)})
    state_label = {s: ("output-state" if s == graph.output else "memory-state" if s in graph.memory_states
                       else "weights-state" if s in graph.weight_states else "state") for s in graph.states}
    live = graph.live
    # How often live nodes read each node: sharing one set of weights is not the same cell
    # as two separate ones (see the module docstring).
    fan_out: dict[str, int] = {}
    for n in graph.nodes:
        if n.name in live:
            for a in n.args:
                fan_out[a] = fan_out.get(a, 0) + 1
    hashes: dict[str, str] = {}
    for _ in range(len(graph.states) + 1):
        for s in graph.states:
            labels[prev_name(s)] = state_label[s]
        hashes = {}
        for name in graph.order:
            if name not in live:
                continue
            node = graph.node_map[name]
            children = [hashes.get(a) or labels[a] for a in node.args]
            if OPS[node.op].commutative:
                children.sort()
            hashes[name] = _h(node.op, _canonical_attrs(node.attrs), tuple(children), fan_out.get(name, 0))
        state_label = {s: _h("state", s == graph.output, hashes[s]) for s in graph.states}
    return hashes


def canonical_hash(graph: CellGraph) -> str:
    """Hex digest identifying the cell's structure (see module docstring)."""
    hashes = node_hashes(graph)
    states = sorted(_h("state", s == graph.output, hashes[s]) for s in graph.states)
    out = _h("output", hashes[graph.output])
    leaves = (len(graph.inputs), len(graph.static)) + ((len(graph.memory),) if graph.memory else ()) \
        + (("memory-states", len(graph.memory_states)) if graph.memory_states else ()) \
        + (("weight-states", len(graph.weight_states)) if graph.weight_states else ())
    return _h("cell", *leaves, tuple(states), out)[:HASH_LENGTH]

"""The ``graph`` space: free computation graphs in the style of NAS-Bench-NLP (Klyuchnikov et al. 2020).

A cell has ``S`` hidden states ``h0`` .. ``h{S-1}`` (output ``h0``) and ``N`` nodes
``node0`` .. ``node{N-1}``. Node k applies one op of ``ops`` to values available to it: the
input ``x`` (only as an input of ``linear``, so the input size may differ from the hidden size),
the previous states ``h0_prev`` .. and the earlier nodes ``node0`` .. ``node{k-1}``. ``linear``
takes 1 .. ``max_linear_inputs`` distinct inputs (repeated picks are merged), ``blend`` 3,
``add``/``sub``/``mul`` 2, the activations 1. The last node is the new ``h0``; the extra states
``h1`` .. are other nodes picked by the decisions.

Decisions, in order (every input pick is taken modulo the number of values available, so every
index is meaningful; the choice labels name the values for the largest cell):

* ``states`` (min_states .. max_states), ``nodes`` (min_nodes .. max_nodes);
* per node k < max_nodes: ``node{k}.op``, ``node{k}.linear_inputs`` (only if ``linear`` is
  offered), ``node{k}.input0`` .. ``node{k}.input{M-1}`` (M = max(max arity of the ops offered));
* per extra state s = 1 .. max_states-1: ``state{s}.node`` (a node other than the last and
  the other states' nodes).

Decisions past the chosen sizes are ignored. Decoding prunes dead nodes, drops extra states
that do not influence the output or never read their previous value (the cell is renumbered
``h1``, ``h2``, ...), and rejects (``InvalidCandidate``) cells whose output never reads ``x``
or is not recurrent.
"""

from __future__ import annotations

from typing import Any, Sequence

from cellsearch.dsl.graph import CellGraph, Node, prev_name
from cellsearch.dsl.ops import OPS
from cellsearch.spaces.base import Decision, InvalidCandidate, Space
from cellsearch.spaces.common import finish, prune, relevant_states, rename
from cellsearch.spaces.parsing import validated_options

SOURCE = "graph space in the style of NAS-Bench-NLP (Klyuchnikov et al. 2020)"


class GraphSpace(Space):
    kind = "graph"

    def __init__(self, name: str = "graph", description: str = "", **options: Any):
        opts = validated_options(self.kind, options)
        super().__init__(name, description, opts)
        self.min_nodes: int = opts["min_nodes"]
        self.max_nodes: int = opts["max_nodes"]
        self.ops: tuple[str, ...] = tuple(opts["ops"])
        self.max_linear_inputs: int = opts["max_linear_inputs"]
        self.min_states: int = opts["min_states"]
        self.max_states: int = opts["max_states"]
        self.arity = {op: (self.max_linear_inputs if op == "linear" else OPS[op].min_args) for op in self.ops}
        self.max_arity = max(self.arity.values())
        dims = [Decision("states", tuple(str(s) for s in range(self.min_states, self.max_states + 1))),
                Decision("nodes", tuple(str(n) for n in range(self.min_nodes, self.max_nodes + 1)))]
        values = ["x", *(prev_name(f"h{s}") for s in range(self.max_states))]
        for k in range(self.max_nodes):
            dims.append(Decision(f"node{k}.op", self.ops))
            if "linear" in self.ops:
                dims.append(Decision(f"node{k}.linear_inputs",
                                     tuple(str(i) for i in range(1, self.max_linear_inputs + 1))))
            avail = tuple(values + [f"node{j}" for j in range(k)])
            for a in range(self.max_arity):
                dims.append(Decision(f"node{k}.input{a}", avail))
        for s in range(1, self.max_states):
            dims.append(Decision(f"state{s}.node", tuple(f"node{j}" for j in range(self.max_nodes - 1))))
        self._decisions = dims

    def decode(self, choices: Sequence[int]) -> CellGraph:
        self.check_choices(choices)
        it = iter(choices)
        n_states = self.min_states + next(it)
        n_nodes = self.min_nodes + next(it)
        if n_states > n_nodes:
            raise InvalidCandidate(f"{n_states} states need at least {n_states} nodes, got {n_nodes}")
        prevs = [prev_name(f"node_s{s}") for s in range(n_states)]  # provisional state names, see below
        nodes: list[tuple[str, list[str]]] = []
        for k in range(self.max_nodes):
            op = self.ops[next(it)]
            n_lin = 1 + next(it) if "linear" in self.ops else 1
            picks = [next(it) for _ in range(self.max_arity)]
            if k >= n_nodes:
                continue
            earlier = [f"node{j}" for j in range(k)]
            avail = (["x"] if op == "linear" else []) + prevs + earlier
            args = [avail[p % len(avail)] for p in picks[:self.arity[op] if op != "linear" else n_lin]]
            if op == "linear":
                args = list(dict.fromkeys(args))  # distinct inputs: one weight matrix each
            nodes.append((op, args))
        candidates = list(range(n_nodes - 1))
        state_nodes = [n_nodes - 1]
        for s in range(1, self.max_states):
            pick = next(it)
            if s < n_states:
                state_nodes.append(candidates.pop(pick % len(candidates)))
        # Provisional names: the state nodes are called node_s{s} so their *_prev leaves exist.
        names = [f"node{k}" for k in range(n_nodes)]
        for s, k in enumerate(state_nodes):
            names[k] = f"node_s{s}"

        def ref(a: str) -> str:
            return names[int(a[4:])] if a.startswith("node") and not a.startswith("node_s") else a

        built = [Node.make(names[k], op, [ref(a) for a in args]) for k, (op, args) in enumerate(nodes)]
        states = [f"node_s{s}" for s in range(n_states)]
        graph = CellGraph(name=self.name, inputs=("x",), states=tuple(states), output=states[0],
                          nodes=tuple(built))
        # Drop extra states that do not matter, until nothing changes.
        while True:
            graph = prune(graph)
            rel, deps = relevant_states(graph)
            keep = [s for s in graph.states if s == graph.output or (s in rel and prev_name(s) in deps)]
            if len(keep) == len(graph.states):
                break
            graph = graph.with_nodes(graph.nodes, states=tuple(keep))
        # States become h0, h1, ...; a dropped state's node gets its plain name node{k} back.
        mapping = {s: f"h{i}" for i, s in enumerate(graph.states)}
        for s, k in enumerate(state_nodes):
            mapping.setdefault(f"node_s{s}", f"node{k}")
        graph = rename(graph, mapping)
        graph = graph.with_nodes(graph.nodes, source=SOURCE,
                                 description=f"Decoded from search space '{self.name}' (graph).")
        return finish(graph, self.name, source=SOURCE, description=graph.description)

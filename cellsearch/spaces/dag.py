"""The ``dag`` space: the ENAS / DARTS recurrent cell (Pham et al. 2018; Liu et al. 2019).

``nodes`` N nodes, each an activation applied through a highway connection:

* node 0: ``n0 = act0(linear(x, h_prev))``;
* node i ≥ 1 reads one earlier node ``n_j`` (j < i):
  ``n_i = blend(sigmoid(linear(n_j)), act_i(linear(n_j)), n_j)``
  = c ⊙ act(W n_j) + (1 − c) ⊙ n_j with the gate c = σ(W_c n_j);
* the new ``h`` is the average of the loose ends (nodes no other node reads):
  ``h = (a + b + ...) * (1/k)``; with a single loose end, that node is ``h``.

An ``identity`` activation emits no node. States ``[h]``; the input is read only through
``linear``, so the input size may differ from the hidden size.

With ``attention`` (a list of kinds: dot, general, additive) the cell may attend to a memory
``enc`` (an encoder's outputs, for the decoder of an encoder-decoder model): the last decision
picks ``none`` or a kind, and with a kind node 0 also reads the context
``ctx = attend(h_prev, enc, kind=...)``: ``n0 = act0(linear(x, ctx, h_prev))`` (Bahdanau's
decoder reads its context the same way).

With ``hops`` K > 1 (and attention) the context is k ≤ K hops of attention, as an end-to-end memory
network reads its memory (Sukhbaatar et al. 2015): ``ctx_1 = attend(h_prev, enc)``, then
``ctx_{k+1} = attend(h_prev + ctx_1 + .. + ctx_k, enc)``, and node 0 reads the last query plus
context; the ``attention`` decision then picks the kind and the number of hops together
(``none``, ``dot``, ``dot*2``, .., ``general*K``, ...), so no two choices give one cell.

With ``memory`` (a list of components: see ``components.py``) the cell may carry a memory state
read and written by ops of its own (an NTM memory, a stack, location-addressed heads): the
``memory`` decision picks ``none`` or a component, whose read node 0 reads beside the input
(``n0 = act0(linear(x, mem_read, h_prev))``) and whose write takes the new ``h``.

Decisions, in order: ``node0.activation``, then for i = 1 .. N-1 ``node{i}.input`` (i choices:
``node0`` .. ``node{i-1}``) and ``node{i}.activation``; then ``attention`` if the space has it,
and ``memory`` if it has components.
"""

from __future__ import annotations

from typing import Any, Sequence

from cellsearch.dsl.graph import CellGraph
from cellsearch.spaces.base import Decision, Space
from cellsearch.spaces.common import NodeList, finish
from cellsearch.spaces.components import COMPONENTS, READ
from cellsearch.spaces.parsing import validated_options

SOURCE = "ENAS (Pham et al. 2018) / DARTS (Liu et al. 2019) recurrent cell space"


class DagSpace(Space):
    kind = "dag"

    def __init__(self, name: str = "dag", description: str = "", **options: Any):
        opts = validated_options(self.kind, options)
        super().__init__(name, description, opts)
        self.n: int = opts["nodes"]
        self.activations: tuple[str, ...] = tuple(opts["activations"])
        self.bias: bool = opts["bias"]
        self.attention: tuple[str, ...] = tuple(opts.get("attention") or ())
        self.hops: int = opts.get("hops", 1) if self.attention else 1
        self.memory: tuple[str, ...] = tuple(opts.get("memory") or ())
        dims = [Decision("node0.activation", self.activations)]
        for i in range(1, self.n):
            dims.append(Decision(f"node{i}.input", tuple(f"node{j}" for j in range(i))))
            dims.append(Decision(f"node{i}.activation", self.activations))
        # the attention choices: none, or a kind read in 1 .. hops hops ("dot", "dot*2", ...)
        self._readings = [(kind, k) for kind in self.attention for k in range(1, self.hops + 1)]
        if self.attention:
            dims.append(Decision("attention", ("none", *(kind if k == 1 else f"{kind}*{k}"
                                                         for kind, k in self._readings))))
        if self.memory:
            dims.append(Decision("memory", ("none", *self.memory)))
        self._decisions = dims
        self._index = {d.name: i for i, d in enumerate(dims)}

    def _unpack(self, choices: Sequence[int]) -> tuple[list[str], list[int]]:
        self.check_choices(choices)
        acts = [self.activations[choices[0]]]
        parents = [-1]
        for i in range(1, self.n):
            parents.append(choices[2 * i - 1])
            acts.append(self.activations[choices[2 * i]])
        return acts, parents

    def _loose_ends(self, acts: list[str], parents: list[int]) -> list[int]:
        """Nodes no other node reads, in a canonical order (the same for isomorphic cells).

        The nodes form a tree rooted at node 0. Children are visited in the order of their
        canonical subtree encodings (activation, sorted children), so the order of the sum
        does not depend on how the nodes happen to be numbered, and ``encode`` can renumber.
        """
        children: list[list[int]] = [[] for _ in range(self.n)]
        for i, p in enumerate(parents):
            if p >= 0:
                children[p].append(i)
        enc: dict[int, str] = {}
        for i in reversed(range(self.n)):  # children have larger indices
            enc[i] = f"{acts[i]}(" + ",".join(sorted(enc[c] for c in children[i])) + ")"
        out: list[int] = []
        stack = [0]
        while stack:
            i = stack.pop()
            if not children[i]:
                out.append(i)
            stack.extend(sorted(children[i], key=lambda c: enc[c], reverse=True))
        return out

    def reads_memory(self) -> bool:
        return bool(self.attention)

    def _reading(self, choices: Sequence[int]) -> tuple[str, int] | None:
        """The attention kind and number of hops the choices pick (None: no attention, or a space
        without it)."""
        if not self.attention:
            return None
        pick = choices[self._index["attention"]]
        return None if pick == 0 else self._readings[pick - 1]

    def _component(self, choices: Sequence[int]) -> str | None:
        """The memory component the choices pick (None: none, or a space without components)."""
        if not self.memory:
            return None
        pick = ("none", *self.memory)[choices[self._index["memory"]]]
        return None if pick == "none" else pick

    def decode(self, choices: Sequence[int]) -> CellGraph:
        acts, parents = self._unpack(choices)
        attention, hops = self._reading(choices) or (None, 1)
        component = COMPONENTS[c] if (c := self._component(choices)) is not None else None
        loose = self._loose_ends(acts, parents)
        names = [f"node{i}" for i in range(self.n)]
        if len(loose) == 1:
            names[loose[0]] = "h"
        extra = component.states if component is not None else ()
        nl = NodeList({"x", "h", "h_prev", "enc", "ctx", READ, *names, *extra, *(f"{s}_prev" for s in extra)})
        attrs = {} if self.bias else {"bias": False}
        first_args = ["x", "h_prev"]
        if attention is not None:
            query = "h_prev"
            for _ in range(hops - 1):  # the memory network's earlier hops
                ctx = nl.add("hop", "attend", [query, "enc"], {"kind": attention}, auto=True)
                query = nl.add("query", "add", [query, ctx], auto=True)
            first_args.insert(1, nl.add("ctx", "attend", [query, "enc"], {"kind": attention}, exact=True))
            if query != "h_prev":
                first_args.insert(1, query)
        if component is not None:
            component.read(nl)
            first_args.insert(1, READ)
        for i in range(self.n):
            last = names[i]
            if i == 0:
                if acts[0] == "identity":
                    nl.add(last, "linear", first_args, attrs, exact=True)
                else:
                    lin = nl.add(f"{last}_linear", "linear", first_args, attrs, auto=True)
                    nl.add(last, acts[0], [lin], exact=True)
                continue
            src = names[parents[i]]
            gl = nl.add(f"{last}_gate_linear", "linear", [src], attrs, auto=True)
            gate = nl.add(f"{last}_gate", "sigmoid", [gl], auto=True)
            cand = nl.add(f"{last}_linear", "linear", [src], attrs, auto=True)
            if acts[i] != "identity":
                cand = nl.add(f"{last}_{acts[i]}", acts[i], [cand], auto=True)
            nl.add(last, "blend", [gate, cand, src], exact=True)
        if len(loose) > 1:
            acc = names[loose[0]]
            for i in loose[1:]:
                acc = nl.add("h_add", "add", [acc, names[i]], auto=True)
            scale = nl.add("h_const", "const", [], {"value": 1.0 / len(loose)}, auto=True)
            nl.add("h", "mul", [acc, scale], exact=True)
        if component is not None:
            component.write(nl)
        graph = CellGraph(name=self.name, inputs=("x",), states=("h", *extra), output="h", nodes=tuple(nl.nodes),
                          memory=("enc",) if attention is not None else (),
                          memory_states=component.memory_states if component is not None else (),
                          weight_states=component.weight_states if component is not None else (),
                          source=SOURCE, description=f"Decoded from search space '{self.name}' (dag).")
        return finish(graph, self.name, source=SOURCE, description=graph.description)

    # ------------------------------------------------------------------ encode
    def _parse(self, graph: CellGraph) -> tuple[int, ...] | None:
        if tuple(graph.inputs) != ("x",) or graph.states[:1] != ("h",):
            return None
        if graph.memory and (not self.attention or len(graph.memory) != 1):
            return None
        component = "none"
        if len(graph.states) > 1:  # a memory component's states
            found = [c for c in self.memory if COMPONENTS[c].states == graph.states[1:]]
            if not found:
                return None
            component = found[0]
        nm = graph.node_map
        attention, hops = "none", 1
        first_args = ["h_prev", "x"]  # node 0's linear
        if graph.memory:
            attends = [n for n in graph.nodes if n.op == "attend"]
            ctx = nm.get("ctx")
            if ctx is None or ctx.op != "attend" or ctx.args[1] != graph.memory[0] \
                    or ctx.attr("kind") not in self.attention or len(attends) > self.hops:
                return None
            attention, hops = ctx.attr("kind"), len(attends)
            first_args += ["ctx"] if ctx.args[0] == "h_prev" else ["ctx", ctx.args[0]]
        if component != "none":
            first_args.append(READ)
        first_args.sort()
        acts_allowed = set(self.activations) - {"identity"}
        info: dict[str, tuple[str | None, str]] = {}  # dag node → (parent or None for node 0, activation)

        def strip(name: str) -> tuple[str, str]:
            node = nm[name]
            if node.op in acts_allowed:
                return node.args[0], node.op
            return name, "identity"

        def visit(name: str) -> None:
            if name in info:
                return
            node = nm[name]
            if node.op == "blend":
                gate, cand, src = node.args
                g = nm[gate]
                if g.op != "sigmoid" or nm[g.args[0]].op != "linear" or nm[g.args[0]].args != (src,):
                    raise ValueError("not a highway node")
                lin, act = strip(cand)
                if nm[lin].op != "linear" or nm[lin].args != (src,):
                    raise ValueError("not a highway node")
                info[name] = (src, act)
                visit(src)
                return
            lin, act = strip(name)
            if nm[lin].op != "linear" or sorted(nm[lin].args) != first_args:
                raise ValueError("not node 0")
            info[name] = (None, act)

        h = nm["h"]
        if h.op == "mul" and any(nm.get(a) is not None and nm[a].op == "const" for a in h.args):
            loose: list[str] = []

            def flatten(name: str) -> None:
                if nm[name].op == "add":  # the sum of the loose ends (dag nodes are never add)
                    for a in nm[name].args:
                        flatten(a)
                else:
                    loose.append(name)

            flatten(next(a for a in h.args if nm[a].op != "const"))
        else:
            loose = ["h"]
        for name in loose:
            visit(name)
        roots = [n for n, (p, _) in info.items() if p is None]
        if len(info) != self.n or len(roots) != 1:
            return None
        order = [n for n in graph.order if n in info]
        index = {n: i for i, n in enumerate(order)}
        if index[roots[0]] != 0:
            return None
        choices = [self.activations.index(info[order[0]][1])]
        for name in order[1:]:
            parent, act = info[name]
            assert parent is not None  # only the root, order[0], has none
            choices += [index[parent], self.activations.index(act)]
        if self.attention:
            choices.append(0 if attention == "none" else 1 + self._readings.index((attention, hops)))
        if self.memory:
            choices.append(("none", *self.memory).index(component))
        return tuple(choices)

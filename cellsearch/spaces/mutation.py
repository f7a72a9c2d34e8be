"""The ``mutation`` space of Jozefowicz, Zaremba & Sutskever 2015.

Cells are formula graphs grown from ``seeds`` (default LSTM and GRU) by the paper's six
transformations:

1. ``replace_activation``: an activation node (tanh, sigmoid, relu, leaky_relu, identity, or
   Jozefowicz's ``Linear(a, x)``, written ``linearA`` = ``linear(arg, diag_init=A)``: square
   weights initialised small plus A on the diagonal) becomes another one of ``activations``;
2. ``swap_op``: an elementwise op (``add`` / ``mul`` / ``sub``) becomes another one of
   ``elementwise_ops``;
3. ``insert_activation``: a random activation is inserted between a node and one of its
   arguments;
4. ``remove_node``: a node with one input and one reader (not a state) is removed;
5. ``replace_by_ancestor``: a node is replaced by one of its ancestors (its readers read the
   ancestor; a state node becomes the ancestor, or ``identity(ancestor)`` where the ancestor is a
   leaf or another state);
6. ``replace_by_combination``: a node becomes the sum, product or difference of a random
   ancestor of it and a random ancestor of another node.

Size rule: the input ``x`` may be narrower or wider than the hidden state, so a transformation
never puts ``x`` where it would be used elementwise: an ancestor that is an input is wrapped in a
new ``linear``, ``linearA`` is never applied to it, and a result that reads an input elementwise
more often than its parent is rejected (a seed that already does so, e.g. MUT1, keeps it).
Results are also rejected when they are invalid (``CellGraph.validate``: dangling names,
cycles, ...), not useful (the output never reads ``x``, a state that never reads its previous
value or does not influence the output; see ``common.check_useful``) or larger than
``max_nodes`` live nodes; dead nodes are pruned after every step.

``mutate`` follows the paper: draw p ~ U[0, 1] and apply each enabled transformation with
probability p (at least one; ``rate: one_to_three`` applies 1-3 random ones instead), in a
random order, retrying a transformation whose result is rejected; the child must differ from
the parent (hash).

Decisions for samplers: ``seed`` (which seed), then ``decision_steps`` groups
``step{k}.mutation`` (the transformation; ``replace_by_combination`` appears once per
elementwise op, e.g. ``replace_by_add``), ``step{k}.target``, ``step{k}.arg_a`` and
``step{k}.arg_b``, each with ``choices`` choices read modulo what is available:

* replace_activation: target = activation node, arg_a = the new activation (among the others);
* swap_op: target = elementwise node, arg_a = the new op (among the others);
* insert_activation: target = (reader, argument slot), arg_a = the activation;
* remove_node: target = the removable node;
* replace_by_ancestor: target = node, arg_a = the ancestor;
* replace_by_<op>: target = node, arg_a = its ancestor, arg_b = an ancestor of another node.

Candidate lists are in evaluation order (leaves first: inputs, previous states), so decoding is
deterministic. A step that does not apply or gives a rejected cell is skipped, so every decision
sequence decodes to a valid cell (at worst the seed).
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from cellsearch.dsl.graph import CellGraph, Node, unique_name
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.ops import ACTIVATIONS
from cellsearch.library import resolve_cell
from cellsearch.spaces.base import Candidate, Decision, InvalidCandidate, Space, check_cell
from cellsearch.spaces.common import (CHECK_HIDDEN_SIZE, CHECK_INPUT_SIZE, ancestors, elementwise_input_uses,
                                      finish, prune, quick_check)
from cellsearch.spaces.parsing import validated_options
from cellsearch.spaces.vocabulary import TRANSFORMATIONS, activation_label, linear_activation_value

SOURCE = "Jozefowicz, Zaremba & Sutskever 2015 (mutation search)"
_BIG = 1 << 30  # range of the random picks in ``mutate`` (reduced modulo the candidates)
_RETRIES = 8  # tries per transformation in ``mutate`` before it is skipped


def _activation_of(node: Node) -> str | None:
    """The activation label of a node, or None if it is not an activation."""
    if node.op in ACTIVATIONS:
        return node.op
    if node.op == "linear" and len(node.args) == 1 and node.attr("diag_init") is not None:
        return activation_label(node.attr("diag_init"))
    return None


def _activation_node(name: str, label: str, arg: str, auto: bool = False) -> Node:
    a = linear_activation_value(label)
    if a is not None:
        return Node.make(name, "linear", [arg], {"diag_init": a}, auto=auto)
    return Node.make(name, label, [arg], auto=auto)


class _Names:
    """Fresh names for the nodes a transformation adds: ``m1``, ``m2``, ... (``unique_name``, the
    bare base reserved), none of them a name the graph already uses."""

    def __init__(self, graph: CellGraph):
        self.taken = {*graph.leaf_kinds, *graph.node_map, *graph.states}

    def fresh(self, base: str = "m") -> str:
        return unique_name(base, self.taken, reserved={base})


class MutationSpace(Space):
    kind = "mutation"

    def __init__(self, name: str = "mutation", description: str = "", **options: Any):
        opts = validated_options(self.kind, options)
        super().__init__(name, description, opts)
        self.activations: tuple[str, ...] = tuple(opts["activations"])
        self.elementwise_ops: tuple[str, ...] = tuple(opts["elementwise_ops"])
        self.transformations: tuple[str, ...] = tuple(t for t in TRANSFORMATIONS if t in opts["transformations"])
        self.rate: str = opts["rate"]
        self.max_nodes: int = opts["max_nodes"]
        self.steps: int = opts["decision_steps"]
        self.choices: int = opts["choices"]
        self.seed_names: tuple[str, ...] = tuple(opts["seeds"])
        self._seeds: list[CellGraph] = []
        for ref in self.seed_names:
            g = prune(resolve_cell(ref))
            same_size = elementwise_input_uses(g) == 0
            check_cell(g, CHECK_INPUT_SIZE if same_size else CHECK_HIDDEN_SIZE, CHECK_HIDDEN_SIZE)
            self._seeds.append(g)
        labels: list[str] = []
        for t in self.transformations:
            if t == "replace_by_combination":
                labels += [f"replace_by_{op}" for op in self.elementwise_ops]
            else:
                labels.append(t)
        self.step_labels: tuple[str, ...] = tuple(labels)
        numbers = tuple(str(i) for i in range(self.choices))
        dims = [Decision("seed", self.seed_names)]
        for k in range(self.steps):
            dims += [Decision(f"step{k}.mutation", self.step_labels), Decision(f"step{k}.target", numbers),
                     Decision(f"step{k}.arg_a", numbers), Decision(f"step{k}.arg_b", numbers)]
        self._decisions = dims

    # ------------------------------------------------------------------ interface
    def seeds(self) -> list[CellGraph]:
        return list(self._seeds)

    def decode(self, choices: Sequence[int]) -> CellGraph:
        self.check_choices(choices)
        graph = self._seeds[choices[0]]
        for k in range(self.steps):
            label_index, target, a, b = choices[1 + 4 * k: 5 + 4 * k]
            label = self.step_labels[label_index]
            try:
                graph = self.apply(graph, label, target, a, b)
            except InvalidCandidate:
                continue  # the step does not apply to this cell: skip it
        return self._finish(graph)

    def mutate(self, parent: Candidate, rng: random.Random, max_tries: int = 100) -> Candidate:
        """The paper's mutation (see module docstring); the child's ``decisions`` are None.

        With ``rate: decisions`` the child instead changes one or two of the parent's decisions
        (``Space.mutate``), so evolution stays among the cells the decision tuples decode to (a
        replay table over all of them, e.g. ``mutation1``); a seed's steps are drawn at random."""
        if self.rate == "decisions":
            return self._mutate_decisions(parent, rng, max_tries)
        for _ in range(max_tries):
            chosen = self._draw_transformations(rng)
            graph = parent.graph
            applied: list[str] = []
            for t in chosen:
                for _ in range(_RETRIES):
                    label = f"replace_by_{rng.choice(self.elementwise_ops)}" if t == "replace_by_combination" else t
                    try:
                        graph = self.apply(graph, label, rng.randrange(_BIG), rng.randrange(_BIG),
                                           rng.randrange(_BIG))
                    except InvalidCandidate:
                        continue
                    applied.append(label)
                    break
            if not applied:
                continue
            try:
                child = self._finish(graph)
            except InvalidCandidate:
                continue
            if canonical_hash(child) != parent.hash:
                return Candidate(child, decisions=None, origin="mutation", parent=parent.hash,
                                 info={"transformations": applied})
        raise InvalidCandidate(f"space '{self.name}': no valid mutation of '{parent.graph.name}' in {max_tries} tries")

    def _mutate_decisions(self, parent: Candidate, rng: random.Random, max_tries: int) -> Candidate:
        if parent.decisions is not None:
            return super().mutate(parent, rng, max_tries)
        seed = next((i for i, g in enumerate(self._seeds) if canonical_hash(g) == parent.hash), None)
        if seed is None:
            raise InvalidCandidate(f"space '{self.name}' (rate: decisions) cannot mutate '{parent.graph.name}': "
                                   f"it was not decoded from decisions and is not a seed")
        dims = self.decisions()
        for _ in range(max_tries):
            choices = (seed, *(rng.randrange(len(d)) for d in dims[1:]))
            child = self.decode(choices)
            if canonical_hash(child) != parent.hash:
                return Candidate(child, decisions=choices, origin="mutation", parent=parent.hash)
        raise InvalidCandidate(f"space '{self.name}': no valid mutation of '{parent.graph.name}' in {max_tries} tries")

    def _draw_transformations(self, rng: random.Random) -> list[str]:
        if self.rate == "one_to_three":
            return [rng.choice(self.transformations) for _ in range(rng.randint(1, 3))]
        p = rng.random()
        chosen = [t for t in self.transformations if rng.random() < p]
        if not chosen:
            chosen = [rng.choice(self.transformations)]
        rng.shuffle(chosen)
        return chosen

    def _finish(self, graph: CellGraph) -> CellGraph:
        return finish(graph, self.name, any_input_size=elementwise_input_uses(graph) == 0, source=SOURCE,
                      description=f"Grown by mutation in search space '{self.name}'.")

    # ------------------------------------------------------------------ transformations
    def apply(self, graph: CellGraph, label: str, target: int, a: int = 0, b: int = 0) -> CellGraph:
        """One transformation (a ``step_labels`` entry) with integer picks read modulo the candidates.

        Returns the pruned, checked result; raises InvalidCandidate if the transformation does
        not apply or its result is rejected (see module docstring).
        """
        if label == "replace_activation":
            new = self._replace_activation(graph, target, a)
        elif label == "swap_op":
            new = self._swap_op(graph, target, a)
        elif label == "insert_activation":
            new = self._insert_activation(graph, target, a)
        elif label == "remove_node":
            new = self._remove_node(graph, target)
        elif label == "replace_by_ancestor":
            new = self._replace_by_ancestor(graph, target, a)
        elif label.startswith("replace_by_") and label[len("replace_by_"):] in self.elementwise_ops:
            new = self._replace_by_combination(graph, target, a, b, label[len("replace_by_"):])
        else:
            raise InvalidCandidate(f"unknown transformation '{label}'")
        new = quick_check(new)
        if len(new.nodes) > self.max_nodes:
            raise InvalidCandidate(f"the cell would have {len(new.nodes)} nodes (max_nodes {self.max_nodes})")
        if elementwise_input_uses(new) > elementwise_input_uses(graph):
            raise InvalidCandidate("the input would be used elementwise (input size may differ from hidden size)")
        return new

    @staticmethod
    def _pick(candidates: list, index: int, what: str):
        if not candidates:
            raise InvalidCandidate(f"the cell has no {what}")
        return candidates[index % len(candidates)]

    @staticmethod
    def _live_nodes(graph: CellGraph) -> list[Node]:
        live = graph.live
        return [graph.node_map[n] for n in graph.order if n in live]

    @staticmethod
    def _wide_leaves(graph: CellGraph) -> set[str]:
        return set(graph.inputs) | set(graph.static)

    def _replace_activation(self, graph: CellGraph, target: int, a: int) -> CellGraph:
        nodes = [n for n in self._live_nodes(graph) if _activation_of(n) is not None]
        node = self._pick(nodes, target, "activation node")
        current = _activation_of(node)
        wide = node.args[0] in self._wide_leaves(graph)
        options = [lab for lab in self.activations if lab != current
                   and not (wide and linear_activation_value(lab) is not None)]
        label = self._pick(options, a, "other activation")
        new = _activation_node(node.name, label, node.args[0], auto=node.auto)
        return graph.with_nodes(new if n.name == node.name else n for n in graph.nodes)

    def _swap_op(self, graph: CellGraph, target: int, a: int) -> CellGraph:
        nodes = [n for n in self._live_nodes(graph) if n.op in self.elementwise_ops]
        node = self._pick(nodes, target, "elementwise node")
        op = self._pick([o for o in self.elementwise_ops if o != node.op], a, "other elementwise op")
        new = Node.make(node.name, op, node.args, auto=node.auto)
        return graph.with_nodes(new if n.name == node.name else n for n in graph.nodes)

    def _insert_activation(self, graph: CellGraph, target: int, a: int) -> CellGraph:
        wide = self._wide_leaves(graph)
        edges = [(n, i) for n in self._live_nodes(graph) for i, arg in enumerate(n.args) if arg not in wide]
        reader, slot = self._pick(edges, target, "edge")
        label = self._pick(list(self.activations), a, "activation")
        name = _Names(graph).fresh()
        act = _activation_node(name, label, reader.args[slot])
        args = list(reader.args)
        args[slot] = name
        new_reader = Node(reader.name, reader.op, tuple(args), reader.attrs, reader.auto)
        out: list[Node] = []
        for n in graph.nodes:
            if n.name == reader.name:
                out += [act, new_reader]
            else:
                out.append(n)
        return graph.with_nodes(out)

    def _remove_node(self, graph: CellGraph, target: int) -> CellGraph:
        live = self._live_nodes(graph)
        reads: dict[str, int] = {}
        for n in live:
            for arg in n.args:
                reads[arg] = reads.get(arg, 0) + 1
        states = set(graph.states)
        nodes = [n for n in live if len(n.args) == 1 and reads.get(n.name, 0) == 1 and n.name not in states]
        node = self._pick(nodes, target, "node with one input and one reader")
        src = node.args[0]
        out = [Node(n.name, n.op, tuple(src if x == node.name else x for x in n.args), n.attrs, n.auto)
               for n in graph.nodes if n.name != node.name]
        return graph.with_nodes(out)

    def _ancestor_list(self, graph: CellGraph, anc: frozenset[str]) -> list[str]:
        leaves = [*graph.inputs, *graph.static, *graph.prev_names]
        return [x for x in leaves if x in anc] + [n for n in graph.order if n in anc]

    def _wrap(self, graph: CellGraph, value: str, names: _Names, extra: list[Node]) -> str:
        """``value``, or a new ``linear(value)`` where value is an input (never used elementwise)."""
        if value in self._wide_leaves(graph):
            name = names.fresh()
            extra.append(Node.make(name, "linear", [value]))
            return name
        return value

    def _replace_by_ancestor(self, graph: CellGraph, target: int, a: int) -> CellGraph:
        anc = ancestors(graph)
        node = self._pick(self._live_nodes(graph), target, "node")
        choice = self._pick(self._ancestor_list(graph, anc[node.name]), a, "ancestor")
        states = set(graph.states)
        n = node.name
        if choice in self._wide_leaves(graph):
            names = _Names(graph)
            if n in states:
                new = Node.make(n, "linear", [choice])
                return graph.with_nodes(new if x.name == n else x for x in graph.nodes)
            extra: list[Node] = []
            choice = self._wrap(graph, choice, names, extra)
            out = [Node(x.name, x.op, tuple(choice if y == n else y for y in x.args), x.attrs, x.auto)
                   for x in graph.nodes if x.name != n]
            return graph.with_nodes(extra + out)
        if n not in states:
            out = [Node(x.name, x.op, tuple(choice if y == n else y for y in x.args), x.attrs, x.auto)
                   for x in graph.nodes if x.name != n]
            return graph.with_nodes(out)
        if choice in graph.node_map and choice not in states:
            # the state takes over the ancestor node (and its name)
            out = []
            for x in graph.nodes:
                if x.name == n:
                    continue
                name = n if x.name == choice else x.name
                out.append(Node(name, x.op, tuple(n if y == choice else y for y in x.args), x.attrs,
                                x.auto and name != n))
            return graph.with_nodes(out)
        new = Node.make(n, "identity", [choice])  # another state, or a previous state
        return graph.with_nodes(new if x.name == n else x for x in graph.nodes)

    def _replace_by_combination(self, graph: CellGraph, target: int, a: int, b: int, op: str) -> CellGraph:
        anc = ancestors(graph)
        live = self._live_nodes(graph)
        node = self._pick(live, target, "node")
        n = node.name
        first = self._pick(self._ancestor_list(graph, anc[n]), a, "ancestor")
        below = {x for x, s in anc.items() if n in s} | {n}  # n and the nodes that read it
        others: set[str] = set()
        for m in live:
            if m.name != n:
                others |= anc[m.name]
        second = self._pick([x for x in self._ancestor_list(graph, frozenset(others)) if x not in below], b,
                            "ancestor of another node")
        names = _Names(graph)
        extra: list[Node] = []
        first = self._wrap(graph, first, names, extra)
        second = self._wrap(graph, second, names, extra)
        new = Node.make(n, op, [first, second])
        return graph.with_nodes(extra + [new if x.name == n else x for x in graph.nodes])


__all__ = ["MutationSpace", "SOURCE"]

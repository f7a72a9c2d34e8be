"""The ``tree`` space of Zoph & Le 2017 (NAS with reinforcement learning, recurrent part).

``leaves`` leaves (a power of two) each combine the input and the previous hidden state with
their own weights; a binary tree of nodes above them combines two children each, up to the
root. Every leaf and node picks a combination (``add`` / ``mul``) and an activation.

* leaf, ``add``: ``act(linear(x, h_prev))`` = act(W x + U h_prev [+ b]);
* leaf, ``mul``: ``act(linear(x) * linear(h_prev))`` = act((W x) ⊙ (U h_prev));
* node: ``act(left + right)`` or ``act(left * right)``.

This is TensorFlow's NASCell parametrisation: X = x·K and M = h·R split into one chunk per leaf,
each leaf ``X_i + M_i`` or ``X_i ⊙ M_i``. ``bias`` (default false, as NASCell) adds a bias to the
leaves' linear maps. An ``identity`` activation emits no node.

With ``memory: true`` the cell has states ``[h, c]`` and four more decisions (Zoph & Le's
"cell inject" and "cell indices"): ``memory.inject_node`` receives ``c_prev`` after its
activation (``out = inject_act(inject_combine(out, c_prev))``, with ``memory.inject_combine`` /
``memory.inject_activation``), and the *pre-activation* value of ``memory.cell_node`` becomes
the new ``c``. The root's value is the new ``h`` (when the root's value would be ``c`` itself,
``h = identity(c)``).

Positions are named ``leaf0`` ... ``leaf{L-1}``, then ``node{level}_{i}`` for the levels above
(``node1_0`` combines ``leaf0`` and ``leaf1``; with 8 leaves the root is ``node3_0``). The
decisions are, in order: ``<pos>.combine``, ``<pos>.activation`` for every position (leaves
first, then level by level), then the four ``memory.*`` decisions.

The NAS cell (``get_cell("nas")``) is ``nas_cell_decisions()``: decoding it gives a cell with
the same hash. ``encode`` reads a cell back into decisions (None if it is not in the space).
"""

from __future__ import annotations

from typing import Any, Sequence

from cellsearch.dsl.graph import CellGraph
from cellsearch.spaces.base import Decision, Space
from cellsearch.spaces.common import NodeList, finish
from cellsearch.spaces.parsing import validated_options

SOURCE = "Zoph & Le 2017 (NAS, recurrent tree space)"


class TreeSpace(Space):
    kind = "tree"

    def __init__(self, name: str = "tree", description: str = "", **options: Any):
        opts = validated_options(self.kind, options)
        super().__init__(name, description, opts)
        self.leaves: int = opts["leaves"]
        self.combinations: tuple[str, ...] = tuple(opts["combinations"])
        self.activations: tuple[str, ...] = tuple(opts["activations"])
        self.memory: bool = opts["memory"]
        self.bias: bool = opts["bias"]
        # positions bottom-up: (name, level, index)
        self.positions: list[tuple[str, int, int]] = [(f"leaf{i}", 0, i) for i in range(self.leaves)]
        level, width = 1, self.leaves // 2
        while width >= 1:
            self.positions += [(f"node{level}_{i}", level, i) for i in range(width)]
            level, width = level + 1, width // 2
        self.root = self.positions[-1][0]
        self.levels = level - 1
        self._decisions = self._make_decisions()

    # ------------------------------------------------------------------ decisions
    def _make_decisions(self) -> list[Decision]:
        out: list[Decision] = []
        for pos, _, _ in self.positions:
            out.append(Decision(f"{pos}.combine", self.combinations))
            out.append(Decision(f"{pos}.activation", self.activations))
        if self.memory:
            names = tuple(p for p, _, _ in self.positions)
            out += [Decision("memory.inject_node", names),
                    Decision("memory.inject_combine", self.combinations),
                    Decision("memory.inject_activation", self.activations),
                    Decision("memory.cell_node", names)]
        return out

    def _position_name(self, level: int, index: int) -> str:
        return f"leaf{index}" if level == 0 else f"node{level}_{index}"

    # ------------------------------------------------------------------ decode
    def decode(self, choices: Sequence[int]) -> CellGraph:
        dims = self._decisions
        self.check_choices(choices)
        pick = {d.name: d.choices[c] for d, c in zip(dims, choices)}
        inject = cell = None
        if self.memory:
            inject = pick["memory.inject_node"]
            cell = pick["memory.cell_node"]
        states = ("h", "c") if self.memory else ("h",)
        reserved = {"x", *states, *(f"{s}_prev" for s in states), *(p for p, _, _ in self.positions)}
        nl = NodeList(reserved)
        value: dict[str, str] = {}  # position → the name of its output value
        no_bias = {} if self.bias else {"bias": False}

        for pos, level, index in self.positions:
            combine = pick[f"{pos}.combine"]
            act = pick[f"{pos}.activation"]
            is_root = pos == self.root
            injected = pos == inject
            steps: list[tuple[str, list[str], dict]] = []  # (op, args, attrs); "@" = previous step
            if level == 0:
                if combine == "add":
                    steps.append(("linear", ["x", "h_prev"], dict(no_bias)))
                else:
                    wx = nl.add(f"{pos}_x", "linear", ["x"], no_bias, auto=True)
                    wh = nl.add(f"{pos}_h", "linear", ["h_prev"], no_bias, auto=True)
                    steps.append((combine, [wx, wh], {}))
            else:
                left = value[self._position_name(level - 1, 2 * index)]
                right = value[self._position_name(level - 1, 2 * index + 1)]
                steps.append((combine, [left, right], {}))
            pre_step = len(steps) - 1
            if act != "identity":
                steps.append((act, ["@"], {}))
            if injected:
                steps.append((pick["memory.inject_combine"], ["@", "c_prev"], {}))
                if pick["memory.inject_activation"] != "identity":
                    steps.append((pick["memory.inject_activation"], ["@"], {}))
            final_name = "h" if is_root else pos
            prev = ""  # set by the first step, which never reads "@"
            for k, (op, args, attrs) in enumerate(steps):
                args = [prev if a == "@" else a for a in args]
                last = k == len(steps) - 1
                if k == pre_step and pos == cell:
                    name = nl.add("c", op, args, attrs, exact=True)
                elif last:
                    name = nl.add(final_name, op, args, attrs, exact=True)
                else:
                    name = nl.add(f"{pos}_{op}", op, args, attrs, auto=True)
                prev = name
            if is_root and prev != "h":  # the root's value is c itself
                nl.add("h", "identity", [prev], exact=True)
                prev = "h"
            value[pos] = prev
        graph = CellGraph(name=self.name, inputs=("x",), states=states, output="h", nodes=tuple(nl.nodes),
                          source=SOURCE, description=f"Decoded from search space '{self.name}' (tree).")
        return finish(graph, self.name, source=SOURCE, description=graph.description)

    # ------------------------------------------------------------------ encode
    def _parse(self, graph: CellGraph) -> tuple[int, ...] | None:
        if tuple(graph.inputs) != ("x",):
            return None
        if self.memory:
            if set(graph.states) != {"h", "c"} or graph.output != "h":
                return None
        elif tuple(graph.states) != ("h",) or graph.output != "h":
            return None
        nm = graph.node_map
        acts = set(self.activations) - {"identity"}
        pick: dict[str, str] = {}

        def strip_act(name: str) -> tuple[str, str]:
            node = nm.get(name)
            if node is not None and node.op in acts and not (name == "c" and self.memory):
                return node.args[0], node.op
            return name, "identity"

        def visit(name: str, level: int, index: int) -> None:
            pos = self._position_name(level, index)
            if self.memory:
                node = nm.get(name)
                inner, iact = strip_act(name)
                inode = nm.get(inner)
                if inode is not None and inode.op in self.combinations and "c_prev" in inode.args \
                        and inner != "c":
                    if "memory.inject_node" in pick:
                        raise ValueError("c_prev is injected twice")
                    pick["memory.inject_node"] = pos
                    pick["memory.inject_combine"] = inode.op
                    pick["memory.inject_activation"] = iact
                    name = inode.args[1] if inode.args[0] == "c_prev" else inode.args[0]
                del node
            inner, act = strip_act(name)
            if inner == "c" and self.memory:
                pick["memory.cell_node"] = pos
            node = nm[inner]
            pick[f"{pos}.activation"] = act
            if level == 0:
                if node.op == "linear" and sorted(node.args) == ["h_prev", "x"]:
                    pick[f"{pos}.combine"] = "add"
                    return
                if node.op in self.combinations and len(node.args) == 2:
                    a, b = (nm[n] for n in node.args)
                    if a.op == b.op == "linear" and sorted((a.args, b.args)) == [("h_prev",), ("x",)]:
                        pick[f"{pos}.combine"] = node.op
                        return
                raise ValueError(f"not a leaf: {inner}")
            if node.op not in self.combinations:
                raise ValueError(f"not a tree node: {inner}")
            pick[f"{pos}.combine"] = node.op
            visit(node.args[0], level - 1, 2 * index)
            visit(node.args[1], level - 1, 2 * index + 1)

        top = "h"
        hnode = nm["h"]
        if hnode.op == "identity" and hnode.args == ("c",):
            top = "c"
        visit(top, self.levels, 0)
        out = []
        for d in self._decisions:
            if d.name not in pick:
                return None
            out.append(d.choices.index(pick[d.name]))
        return tuple(out)

    # ------------------------------------------------------------------ the NAS cell
    def nas_cell_decisions(self) -> tuple[int, ...] | None:
        """The decisions of Zoph & Le's NAS cell (8 leaves, memory), None if this space lacks it."""
        if self.leaves != 8 or not self.memory:
            return None
        spec = {
            "leaf0": ("add", "sigmoid"), "leaf1": ("add", "relu"), "leaf2": ("add", "sigmoid"),
            "leaf3": ("mul", "relu"), "leaf4": ("add", "tanh"), "leaf5": ("add", "sigmoid"),
            "leaf6": ("add", "tanh"), "leaf7": ("add", "sigmoid"),
            "node1_0": ("mul", "tanh"), "node1_1": ("add", "tanh"), "node1_2": ("mul", "tanh"),
            "node1_3": ("add", "sigmoid"), "node2_0": ("mul", "identity"), "node2_1": ("add", "tanh"),
            "node3_0": ("mul", "tanh"),
        }
        pick = {}
        for pos, (comb, act) in spec.items():
            pick[f"{pos}.combine"] = comb
            pick[f"{pos}.activation"] = act
        pick.update({"memory.inject_node": "node1_0", "memory.inject_combine": "add",
                     "memory.inject_activation": "tanh", "memory.cell_node": "node2_0"})
        try:
            return tuple(d.choices.index(pick[d.name]) for d in self._decisions)
        except ValueError:
            return None  # a combination or activation the NAS cell needs is not offered

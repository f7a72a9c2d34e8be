"""The intermediate representation every stage shares: ``CellGraph``.

A cell is a small dataflow graph evaluated once per time step. Its leaves are

* per-step inputs (``x``), size ``input_size``;
* static inputs (constant over the sequence, e.g. a condition vector), size ``static_size``;
* memories: a (B, N, hidden) matrix per sequence (e.g. an encoder's outputs, N rows, some of
  them padding), read through ``attend(q, M)``, ``address(k, M, beta)`` and ``read(w, M)``;
* the previous value of every state, spelled ``<state>_prev`` (size ``hidden_size``; a memory
  state, listed in ``memory_states``, is a (B, N, hidden) matrix the cell updates with
  ``write``, the memory of a Neural Turing Machine; a weights state, listed in
  ``weight_states``, holds (B, N) weights over a memory state's rows, e.g. a head's weights at
  the last step, which location addressing interpolates with and shifts, and starts with all
  weight on row 0).

Every node is hidden-sized, except the results of the memory ops: ``address`` gives weights over
the N rows and ``write`` a matrix (``value_kinds``; ``dsl.ops.SIGNATURES`` says what each reads). The node named like a state is that state's new value, so
``c: f * c_prev + i * g`` reads the old ``c`` and defines the new one. Graphs are immutable;
the search builds new ones with ``replace``/``with_nodes``.
"""

from __future__ import annotations

import keyword
import math
import re
import unicodedata
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Iterable, Iterator

from cellsearch import limits
from cellsearch.dsl.ops import OPS, normalize_attrs
from cellsearch.ops.base import range_text, satisfies
from cellsearch.errors import CellError, CellWarning, SizeError
from cellsearch.limits import exceeds, shown

PREV_SUFFIX = "_prev"


def prev_name(state: str) -> str:
    """The name of a state's value at the previous step: ``h`` -> ``h_prev``."""
    return state + PREV_SUFFIX


def unique_name(base: str, taken: set[str], reserved: "set[str] | frozenset[str]" = frozenset()) -> str:
    """``base``, else ``base1``, ``base2``, ...: the first name neither taken nor reserved (then taken)."""
    name, k = base, 1
    while name in taken or name in reserved:
        name = f"{base}{k}"
        k += 1
    taken.add(name)
    return name


@dataclass(frozen=True)
class Node:
    """One operation: ``name = op(*args, **attrs)``.

    ``auto`` marks names the equation parser invented for sub-expressions; the printer
    inlines such nodes again, so they do not show up as separate equations.
    """

    name: str
    op: str
    args: tuple[str, ...] = ()
    attrs: tuple[tuple[str, Any], ...] = ()
    auto: bool = field(default=False, compare=False)

    def attr(self, key: str) -> Any:
        """The value of attribute ``key``: the node's own, else the op's default for it."""
        for k, v in self.attrs:
            if k == key:
                return v
        return OPS[self.op].attrs[key].default

    @property
    def attr_dict(self) -> dict[str, Any]:
        """The attributes the node sets (defaults left out), as a dict."""
        return dict(self.attrs)

    @staticmethod
    def make(name: str, op: str, args: Iterable[str] = (), attrs: dict[str, Any] | None = None,
             auto: bool = False) -> "Node":
        """A node with attributes checked and normalised (defaults dropped, sorted)."""
        if op not in OPS:
            raise CellError(f"unknown op {shown(op)} (known: {', '.join(OPS)})", node=name)
        try:
            norm = normalize_attrs(op, dict(attrs or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise CellError(str(exc.args[0]), node=name) from None
        return Node(name, op, tuple(args), tuple(sorted(norm.items())), auto)


@dataclass(frozen=True)
class CellGraph:
    """A recurrent cell: the graph of one time step (see the module's docstring), immutable.

    Load one with ``cellsearch.load_cell``/``loads_cell`` or ``cellsearch.get_cell``; ``validate``
    checks it (the loaders do), ``dumps_cell`` writes it back as YAML.
    """

    name: str
    inputs: tuple[str, ...]
    states: tuple[str, ...]
    output: str
    nodes: tuple[Node, ...]
    static: tuple[str, ...] = ()
    memory: tuple[str, ...] = ()  # memory leaves, read by attend(), address(), read()
    memory_states: tuple[str, ...] = ()  # states that are (B, N, H) matrices, updated with write()
    weight_states: tuple[str, ...] = ()  # states that are (B, N) weights over a memory state's rows
    description: str = ""
    source: str = ""  # the paper or origin of the cell
    # The file the cell was loaded from, for error messages only (not part of the cell: not
    # compared, not saved; with_nodes() drops it, since the new cell is no longer that file's).
    file: str = field(default="", compare=False, repr=False)

    # ------------------------------------------------------------------ lookup
    @cached_property
    def node_map(self) -> dict[str, Node]:
        """Node name → node (``graph[name]`` reads it)."""
        return {n.name: n for n in self.nodes}

    def __getitem__(self, name: str) -> Node:
        return self.node_map[name]

    def __contains__(self, name: str) -> bool:
        return name in self.node_map

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    @property
    def prev_names(self) -> tuple[str, ...]:
        """The leaves holding the states' previous values (``h_prev``), in state order."""
        return tuple(prev_name(s) for s in self.states)

    @cached_property
    def leaf_kinds(self) -> dict[str, str]:
        """Name → "input" | "static" | "prev" for every leaf of the step graph."""
        kinds = {n: "input" for n in self.inputs}
        kinds.update({n: "static" for n in self.static})
        kinds.update({n: "memory" for n in self.memory})
        kinds.update({prev_name(s): "prev" for s in self.states})
        return kinds

    def state_of_prev(self, name: str) -> str:
        """The state whose previous value ``name`` is: ``h_prev`` -> ``h``."""
        return name[: -len(PREV_SUFFIX)]

    @cached_property
    def consumers(self) -> dict[str, list[str]]:
        """Name (node or leaf) → names of the nodes that read it, in node order."""
        out: dict[str, list[str]] = {name: [] for name in [*self.leaf_kinds, *self.node_map]}
        for n in self.nodes:
            for a in n.args:
                out.setdefault(a, []).append(n.name)
        return out

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Node names in an evaluation order (dependencies first); stable w.r.t. file order."""
        # A depth-first search with an explicit stack: a cell may be a chain of thousands of
        # nodes, deeper than Python's recursion limit.
        done: set[str] = set(self.leaf_kinds)
        order: list[str] = []
        for n in self.nodes:
            if n.name in done:
                continue
            path = [n.name]  # the nodes being visited, outermost first
            on_path = {n.name}
            pending = [iter(self.node_map[n.name].args)]  # per node on the path: its args not yet visited
            while pending:
                arg = next(pending[-1], None)
                if arg is None:  # every arg of path[-1] is done (an arg is a name, never None)
                    pending.pop()
                    name = path.pop()
                    on_path.discard(name)
                    done.add(name)
                    order.append(name)
                    continue
                if arg in done:
                    continue
                if arg in on_path:
                    self._raise_cycle(path[path.index(arg):] + [arg])
                node = self.node_map.get(arg)
                if node is None:
                    continue  # undefined names are reported by validate()
                path.append(arg)
                on_path.add(arg)
                pending.append(iter(node.args))
        return tuple(order)

    def _raise_cycle(self, cycle: list[str]) -> None:
        # name the equations, not the sub-expressions the parser invented (a_add)
        names = [self.written_node(c) for c in cycle]
        names = [c for i, c in enumerate(names) if i == 0 or c != names[i - 1]]
        if len(names) == 1:
            names *= 2
        state = next((c for c in names if c in self.states), "STATE")
        raise CellError("cycle inside one step: " + " -> ".join(names)
                        + f" (to read last step's value of a state, use '{prev_name(state)}')",
                        node=names[0])

    @cached_property
    def live(self) -> frozenset[str]:
        """Nodes that some state's new value depends on (the rest is dead code)."""
        live: set[str] = set()
        stack = [s for s in self.states if s in self.node_map]
        while stack:
            name = stack.pop()
            if name in live or name not in self.node_map:
                continue
            live.add(name)
            stack.extend(self.node_map[name].args)
        return frozenset(live)

    # ------------------------------------------------------------------ derived facts
    def depends_on(self, name: str, leaves: set[str] | frozenset[str]) -> bool:
        """Whether node/leaf ``name`` reads (transitively) any of ``leaves``."""
        return name in self._reach(frozenset(leaves))

    def _reach(self, leaves: frozenset[str]) -> frozenset[str]:
        cache: dict[frozenset[str], frozenset[str]] = self.__dict__.setdefault("_reach_cache", {})
        if leaves not in cache:
            reached = set(leaves)
            for name in self.order:
                if any(a in reached for a in self.node_map[name].args):
                    reached.add(name)
            cache[leaves] = frozenset(reached)
        return cache[leaves]

    def recurrent_nodes(self) -> frozenset[str]:
        """Nodes whose value depends on a previous state (they must run inside the time loop)."""
        return self._reach(frozenset(self.prev_names)) - set(self.prev_names)

    def param_count(self, input_size: int, hidden_size: int, static_size: int | None = None) -> int:
        """The number of trainable parameters of the compiled cell at these sizes (dead nodes have none)."""
        sizes = self.leaf_sizes(input_size, hidden_size, static_size)
        total = 0
        for n in self.nodes:
            if n.name not in self.live:
                continue  # dead nodes get no parameters (see CellParameters)
            for _, shape in OPS[n.op].parameters(n, sizes, hidden_size):  # (what CellParameters registers)
                total += math.prod(shape)
        return total

    def leaf_sizes(self, input_size: int, hidden_size: int, static_size: int | None = None) -> dict[str, int]:
        """Leaf name -> its vector size (a static input is ``hidden_size`` unless ``static_size`` is given)."""
        sizes = {n: input_size for n in self.inputs}
        sizes.update({n: (static_size if static_size is not None else hidden_size) for n in self.static})
        sizes.update({n: hidden_size for n in self.memory})
        sizes.update({p: hidden_size for p in self.prev_names})
        return sizes

    def multiply_adds(self, input_size: int, hidden_size: int, static_size: int | None = None) -> int:
        """Multiply-adds per time step and batch element (matmuls plus elementwise work; an
        ``attend`` counts as elementwise work, the memory's length N being unknown here)."""
        sizes = self.leaf_sizes(input_size, hidden_size, static_size)
        total = 0
        for n in self.nodes:
            if n.name not in self.live:
                continue
            if n.op == "linear":
                total += sum(hidden_size * sizes.get(a, hidden_size) for a in n.args)
            elif n.op != "const":
                total += hidden_size
        return total

    # ------------------------------------------------------------------ building new graphs
    def with_nodes(self, nodes: Iterable[Node], **changes: Any) -> "CellGraph":
        """A copy with these nodes (and other fields changed by keyword); no longer the loaded file's."""
        changes.setdefault("file", "")
        return replace(self, nodes=tuple(nodes), **changes)

    def renamed(self, name: str) -> "CellGraph":
        """A copy under another name."""
        return replace(self, name=name)

    # ------------------------------------------------------------------ validation
    def validate(self, *, warn: bool = True) -> list[str]:
        """Raise CellError on the first problem; return (and warn) the soft problems."""
        check_cell_name(self.name)
        for what, text in (("description", self.description), ("source", self.source)):
            if not isinstance(text, str):
                raise CellError(f"the cell's {what} must be text, got {shown(text)}")
            if len(text) > limits.MAX_CELL_TEXT_CHARS:
                raise CellError(exceeds(f"{what} length", len(text), "cell text length",
                                        f"{limits.MAX_CELL_TEXT_CHARS} characters"))
        if not self.states:
            raise CellError("a cell needs at least one state (e.g. states: [h])")
        if not self.nodes:
            raise CellError("the cell is empty: it has no nodes (add one node per state at least)")
        if len(self.nodes) > limits.MAX_NODES_PER_CELL:
            raise CellError(exceeds("node count", len(self.nodes), "nodes per cell",
                                    f"{limits.MAX_NODES_PER_CELL} nodes"))
        seen: dict[str, str] = {}
        for kind, names in (("input", self.inputs), ("static input", self.static), ("memory", self.memory),
                            ("state", self.states)):
            for leaf in names:
                check_name(leaf, kind)
                if leaf in seen:
                    raise CellError(f"duplicate name '{leaf}' (used as {seen[leaf]} and as {kind})", node=leaf)
                seen[leaf] = kind
        for p in self.prev_names:
            if p in seen:
                raise CellError(f"'{p}' is reserved for the previous value of state "
                                f"'{self.state_of_prev(p)}'", node=p)
            seen[p] = "previous state"
        for n in self.nodes:
            check_name(n.name, "node")
            if seen.get(n.name) == "node":
                raise CellError(f"duplicate node name '{n.name}'", node=n.name)
            if seen.get(n.name) == "previous state":
                raise CellError(f"'{n.name}' is reserved for the previous value of state "
                                f"'{self.state_of_prev(n.name)}': choose another node name", node=n.name)
            if n.name in seen and seen[n.name] != "state":
                raise CellError(f"duplicate name: '{n.name}' is already the name of "
                                f"{'an' if seen[n.name][0] in 'aeiou' else 'a'} {seen[n.name]}",
                                node=n.name)
            seen[n.name] = "node"
        for n in self.nodes:
            spec = OPS.get(n.op)
            if spec is None:
                raise CellError(f"unknown op '{n.op}' (known: {', '.join(OPS)})", node=n.name)
            if len(n.args) < spec.min_args or (spec.max_args is not None and len(n.args) > spec.max_args):
                raise CellError(f"{n.op}() takes {spec.arity_text()} argument(s), got {len(n.args)}",
                                node=n.name)
            for a in n.args:
                if a not in seen:
                    raise CellError(f"undefined name {shown(a)}" + _did_you_mean(a, seen, self), node=n.name)
            try:
                normalize_attrs(n.op, dict(n.attrs))
            except (KeyError, TypeError, ValueError) as exc:
                raise CellError(str(exc.args[0]), node=n.name) from None
            if n.op == "linear" and n.attr("diag_init") is not None:
                for a in n.args:
                    if self.leaf_kinds.get(a) == "input":
                        raise CellError(f"linear(diag_init=...) needs square weights, but '{a}' is an input "
                                        "(input size may differ from hidden size)", node=n.name)
        for s in self.states:
            if s not in self.node_map:
                raise CellError(f"state '{s}' is never updated: add a node named '{s}' "
                                f"that computes its new value from '{prev_name(s)}'", node=s)
        if self.output not in self.states:
            raise CellError(f"the output '{self.output}' is not a state (states: {', '.join(self.states)})"
                            if self.output else "missing output: say which state is the output, e.g. output: h")
        for i, s in enumerate(self.memory_states):
            if s not in self.states:
                raise CellError(f"memory state '{s}' is not a state: list it in states too", node=s)
            if s in self.memory_states[:i]:
                raise CellError(f"memory state '{s}' is listed twice", node=s)
        for i, s in enumerate(self.weight_states):
            if s not in self.states:
                raise CellError(f"weights state '{s}' is not a state: list it in states too", node=s)
            if s in self.weight_states[:i] or s in self.memory_states:
                raise CellError(f"weights state '{s}' is listed twice (in weight_states or memory_states)", node=s)
            if not self.memory_states:
                raise CellError(f"weights state '{s}' holds weights over a memory state's rows, but the cell has "
                                "none: declare one, e.g. memory_states: [M]", node=s)
        order = self.order  # raises on cycles
        self.check_kinds()
        self.check_ranges()
        constant: set[str] = set()  # nodes whose value reads no input and no state
        for name in order:
            node = self.node_map[name]
            if all(a in constant for a in node.args):
                constant.add(name)
            if OPS[node.op].is_matmul or OPS[node.op].signature:
                for a in node.args:
                    if a in constant:
                        arg = self.node_map[a]
                        what = (f"{arg.attr('value'):g}" if arg.op == "const" else "a constant expression") \
                            if arg.auto else f"'{a}'"
                        raise CellError(f"{node.op}() needs vectors as arguments, but {what} is a constant",
                                        node=name)
        for name in order:
            if name in constant and self.node_map[name].op != "const" and name in self.live:
                raise CellError("the node reads no input and no state: it only combines constants", node=name)
        for s in self.states:
            if s in constant:
                raise CellError(f"state '{s}' is a constant: it must read an input or a state", node=s)
        soft = []
        for n in self.nodes:
            if n.name not in self.live:
                msg = f"node '{self.written_node(n.name)}' is never used by any state"  # not 'a_linear'
                if msg not in soft:
                    soft.append(msg)
        used_leaves = {a for n in self.nodes if n.name in self.live for a in n.args}
        for leaf in (*self.inputs, *self.static, *self.memory):
            if leaf not in used_leaves:
                soft.append(f"{'memory' if leaf in self.memory else 'input'} '{leaf}' is never used")
        if warn:
            for msg in soft:
                warnings.warn(f"{self.name}: {msg}", CellWarning, stacklevel=2)
        return soft

    def state_kind(self, state: str) -> str:
        """What ``state`` holds: "matrix" (a memory state, (B, N, H)), "weights" (a weights state,
        (B, N)) or "vector" (B, H)."""
        return "matrix" if state in self.memory_states else "weights" if state in self.weight_states else "vector"

    @cached_property
    def value_kinds(self) -> dict[str, str]:
        """Name → "vector" | "weights" | "matrix" for every leaf and node (see the module docstring);
        ``validate`` checks that every op reads the kinds it needs (``check_kinds``)."""
        kinds = {leaf: "vector" for leaf in self.leaf_kinds}
        kinds.update({m: "matrix" for m in self.memory})
        kinds.update({prev_name(s): "matrix" for s in self.memory_states})
        kinds.update({prev_name(s): "weights" for s in self.weight_states})
        for n in self.nodes:
            kinds[n.name] = OPS[n.op].result_kind()
        return kinds

    @cached_property
    def value_ranges(self) -> dict[str, str | None]:
        """Name → what its value is known to be ("positive", "nonnegative") or None, from each op's
        ``result_range``; inputs, previous states (a state starts at 0) and memories are unknown.
        ``validate`` checks that every op's arguments are what its ``domain`` needs (log: positive)."""
        ranges: dict[str, str | None] = {leaf: None for leaf in self.leaf_kinds}
        for name in self.order:
            node = self.node_map[name]
            ranges[name] = OPS[node.op].result_range(node, [ranges.get(a) for a in node.args])
        return ranges

    def check_ranges(self) -> None:
        """Raise CellError where an op reads an argument not known to be in its domain (log(x))."""
        ranges = self.value_ranges
        for name in self.order:
            node = self.node_map[name]
            want = OPS[node.op].domain
            if want is None:
                continue
            for a in node.args:
                if not satisfies(ranges.get(a), want):
                    arg = self.node_map.get(a)
                    what = f"{arg.op}(...)" if arg is not None and arg.auto else shown(a)
                    makers = [op.name for op in OPS.values() if op.min_args == 1 and op.domain is None
                              and satisfies(op.result_range(None, [None]), want)]
                    raise CellError(f"{node.op}() needs an argument known to be {range_text(want)} (the output of "
                                    f"{', '.join(makers)}, or a sum or product of such), but {what} is not",
                                    node=name)

    def check_kinds(self) -> None:
        """Raise CellError where a node reads the wrong kind of value (a matrix in tanh(), a vector
        as a memory...) or a state holds the wrong kind."""
        kinds = self.value_kinds
        described = {"vector": "a vector", "weights": "weights over memory rows", "matrix": "a memory"}

        def shown_arg(a: str) -> str:  # a sub-expression the parser named: by its op, not its invented name
            node = self.node_map.get(a)
            return f"{node.op}(...)" if node is not None and node.auto else shown(a)

        for n in self.nodes:
            wanted = OPS[n.op].arg_kinds(len(n.args))
            for k, (a, want) in enumerate(zip(n.args, wanted)):
                got = kinds.get(a, "vector")
                if got == want:
                    continue
                if want == "matrix":
                    known = ", ".join([*self.memory, *(prev_name(s) for s in self.memory_states)])
                    raise CellError(f"{n.op}() reads a memory as argument {k + 1}, but {shown_arg(a)} is "
                                    f"{described[got]}" + (f" (memories here: {known})" if known else
                                                            " (declare one, e.g. memory: [enc])"), node=n.name)
                if got == "matrix":
                    raise CellError(f"{shown_arg(a)} is a memory (a matrix): read it with attend(query, M) or "
                                    f"read(address(key, M, beta), M), not as argument {k + 1} of {n.op}()",
                                    node=n.name)
                raise CellError(f"{n.op}() needs {described[want]} as argument {k + 1}, but {shown_arg(a)} is "
                                f"{described[got]}" + (" (made by address())" if got == "weights" else ""),
                                node=n.name)
        for n in self.nodes:
            for m in n.args[1:] if n.op == "attend" else ():
                if m not in self.memory and kinds.get(m) == "matrix":
                    raise CellError(f"attend() reads a given memory (memory: [...]); read the memory state "
                                    f"'{m}' with read(address(key, {m}, beta), {m})", node=n.name)
            if n.op in ("address", "read", "write") or OPS[n.op].kind == "stack":
                leaf = next((a for a in n.args if a in self.memory), None)
                if leaf is not None:
                    raise CellError(f"{n.op}() works on a memory state (memory_states); '{leaf}' is a given memory "
                                    f"(with padding rows): read it with attend(query, {leaf})", node=n.name)
        for s in self.states:
            want = self.state_kind(s)
            if kinds[s] != want:
                what = {"matrix": "a memory state (memory_states)", "weights": "a weights state (weight_states)",
                        "vector": "a vector state"}[want]
                hint = {"matrix": f": update it with write({prev_name(s)}, ...)",
                        "weights": " (weights come from address() and the location ops)",
                        "vector": f" (a memory state is listed in memory_states: [{s}], weights over its rows "
                                  f"in weight_states: [{s}])"}[want]
                raise CellError(f"state '{s}' is {what} but its node gives {described[kinds[s]]}{hint}", node=s)
        for s in self.weight_states:
            if s == self.output:
                raise CellError(f"the output '{s}' is a weights state: the output must be a vector state", node=s)
            if not self.depends_on(s, {prev_name(s)}):
                raise CellError(f"weights state '{s}' must be computed from its previous value, e.g. "
                                f"{s}: interpolate(address(...), {prev_name(s)}, gate)", node=s)
        for s in self.memory_states:
            if s == self.output:
                raise CellError(f"the output '{s}' is a memory state: the output must be a vector state", node=s)
            if not self.depends_on(s, {prev_name(s)}):
                raise CellError(f"memory state '{s}' must be written from its previous value: "
                                f"{s}: write({prev_name(s)}, ...)", node=s)

    def check_sizes(self, input_size: int, hidden_size: int, static_size: int | None = None) -> None:
        """Raise SizeError where an input of the wrong size is used elementwise, or the hidden size is
        smaller than an op needs (``Op.min_hidden``)."""
        sizes = self.leaf_sizes(input_size, hidden_size, static_size)
        for n in self.nodes:
            if hidden_size < OPS[n.op].min_hidden:
                raise SizeError(f"{n.op}() needs a hidden size of at least {OPS[n.op].min_hidden}, got {hidden_size}",
                                node=self.written_node(n.name), source=self.file or f"cell '{self.name}'")
            if n.op == "linear":
                continue
            for a in n.args:
                if self.value_kinds.get(a, "vector") != "vector":
                    continue  # memories and weights: their sizes are checked when given (compile.attention)
                size = sizes.get(a, hidden_size)
                if size != hidden_size:
                    kind = self.leaf_kinds[a]
                    raise SizeError(
                        f"{kind} '{a}' has size {size} but is used directly in {n.op}(), which needs "
                        f"hidden size {hidden_size}: wrap it in linear({a}) or make the sizes equal",
                        node=self.written_node(n.name), source=self.file or f"cell '{self.name}'")

    def written_node(self, name: str) -> str:
        """The node a user wrote that ``name`` is part of.

        Auto nodes are sub-expressions the equation parser named (``h_add``); errors name the
        equation they came from (``h``) instead, following their single reader upwards.
        """
        seen: set[str] = set()
        while name in self.node_map and self.node_map[name].auto and name not in seen:
            seen.add(name)
            readers = set(self.consumers.get(name, ()))
            if len(readers) != 1:
                break
            name = readers.pop()
        return name


# A cell's name names files (``NAME.yaml``, ``NAME.py`` on export) and shows up in generated
# source and YAML headers, so it is held to a file-name-safe ASCII pattern: no path separators,
# no leading '.' or '-', no quotes, no white space, no line breaks.
CELL_NAME_RULE = "ASCII letters, digits, '_', '-' and '.', not starting with '.' or '-'"
_CELL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


def check_cell_name(name: object) -> None:
    """Raise CellError unless ``name`` is a valid cell name (``CELL_NAME_RULE``, at most
    ``MAX_NAME_CHARS`` characters)."""
    if not isinstance(name, str):
        raise CellError(f"the cell name must be a string, got {shown(name)}")
    if not _CELL_NAME.match(name):  # (before the length: what to change matters more than how much)
        raise CellError(f"cell name {shown(name)} is not allowed: use {CELL_NAME_RULE}")
    if len(name) > limits.MAX_NAME_CHARS:
        raise CellError(exceeds(f"cell name {shown(name, 24)} of length", len(name), "name length",
                                f"{limits.MAX_NAME_CHARS} characters"))


def cell_name_from(text: str) -> str:
    """A valid cell name made from ``text`` (e.g. a file's stem): every other character becomes
    ``_``, a leading '.' or '-' gets a ``_`` in front, and the result is cut to the name limit."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "cell"
    if not _CELL_NAME.match(name):
        name = "_" + name
    return name[: limits.MAX_NAME_CHARS]


def check_name(name: object, kind: str, node: str | None = None) -> None:
    """Raise CellError unless ``name`` is a plain ASCII identifier (letters, digits, _), not a
    keyword, not starting with ``__`` and at most ``MAX_NAME_CHARS`` long.

    ASCII only: Python folds other identifiers (NFKC), so a fullwidth ``ｈ`` in an equation
    would silently read as ``h``. ``kind`` says what the name is for (input, state, node...);
    the error names ``node`` if given, else the name itself when it is fit to print."""
    if node is None and isinstance(name, str) and name.isprintable() and len(name) <= limits.MAX_NAME_CHARS:
        node = name
    if not isinstance(name, str):
        raise CellError(f"{kind} name {shown(name)} is not a valid identifier (letters, digits, _)", node=node)
    if len(name) > limits.MAX_NAME_CHARS:
        raise CellError(exceeds(f"{kind} name {shown(name, 24)} of length", len(name), "name length",
                                f"{limits.MAX_NAME_CHARS} characters"), node=node)
    bad = next((c for c in name if not c.isascii()), None)
    if bad is not None:
        raise CellError(f"{kind} name {shown(name)} has a {describe_non_ascii(bad)}", node=node)
    if not name.isidentifier() or keyword.iskeyword(name):
        raise CellError(f"{kind} name {shown(name)} is not a valid identifier (letters, digits, _)", node=node)
    if name.startswith("__"):
        raise CellError(f"{kind} name {shown(name)} may not start with '__'", node=node)


def describe_non_ascii(char: str, where: str = "") -> str:
    """Why a non-ASCII character is refused, e.g. ``non-ASCII character 'ｈ' (U+FF48) at column 6:
    names are ASCII letters, digits and _ (Python would read it as 'h')``."""
    text = f"non-ASCII character {shown(char) if char.isprintable() else ascii(char)} (U+{ord(char):04X}){where}: " \
           "names are ASCII letters, digits and _"
    folded = unicodedata.normalize("NFKC", char)
    if folded != char and folded.isascii() and folded.isprintable():
        text += f" (Python would read it as {shown(folded)})"
    return text


def _did_you_mean(name: str, known: dict[str, str], graph: CellGraph) -> str:
    import difflib

    if name in graph.states or len(name) > limits.MAX_NAME_CHARS:
        return ""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    if name.endswith(PREV_SUFFIX):
        hint += f"; '{name}' would be the previous value of a state '{name[:-len(PREV_SUFFIX)]}', which is not declared"
    return hint

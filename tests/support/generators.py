"""Hypothesis generators (Hypothesis calls them strategies) for random *valid* cells, plus
structure-preserving rewrites.

Used by the DSL tests (round trips, hashing) and by the backend tests (compiled vs
interpreter), so the cells cover every op of ``cellsearch.dsl.ops.OPS``:

* 1-3 states named ``h``, ``c``, ``m`` (the output is the first, ``h``), one per-step input
  ``x`` and optionally one static input ``cond``; with ``memory=True`` a memory ``enc`` that
  ``attend`` nodes read (the only op that may, and only with ``memory=True``); with
  ``memory_state=True`` a memory state ``mem``: a stack (``stack``, ``top``, ``below``; drawn, or
  when ``favour`` is a stack op) or an NTM's memory with a read head whose result
  joins a random linear and a write head (``address``, ``read``, ``write``), keys, strengths,
  erase and add vectors made from random vectors of the cell; with ``location`` (True, or None:
  drawn) the read head adds location addressing: a weights state ``mloc`` interpolated with the
  content weights, then optionally shifted and sharpened (``interpolate``, ``shift``, ``sharpen``);
* 1-12 nodes built bottom-up, so the node list is a valid evaluation order before the
  optional shuffle; every non-``const`` node reads (transitively) an input or a state, so no
  node "only combines constants" and ``linear`` never reads a constant;
* states that do or do not read their own ``*_prev``, states that read each other's
  ``*_prev`` or each other's new value, nodes that depend on ``x`` only (hoistable out of
  the time loop) and, occasionally, dead nodes (which make ``validate`` warn).

Nodes may read ``x``/``cond`` *elementwise* (e.g. ``x + h_prev``); a test that uses such a
cell has to make input (and static) size equal to hidden size -- ``reads_inputs_elementwise``
says whether it must, or pass ``elementwise_inputs=False`` to ``cells``.

API::

    cells(...)                      strategy of CellGraph, already passing validate(warn=False)
    reads_inputs_elementwise(g)     True if some node uses x/cond outside linear()
    constant_nodes(g)               names of nodes that read no input and no state
    rename_nodes(g, mapping)        same cell with names changed (states carry their *_prev)
    random_renaming(g, rng)         a mapping that renames every node, state and input
    shuffle_commutative(g, rng)     args of add/mul/linear permuted (optionally node order too)
    add_dead_node(g, rng)           the cell plus one node that no state reads
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Iterable, Mapping

from hypothesis import strategies as st

from cellsearch.dsl.graph import CellGraph, Node, prev_name
from cellsearch.dsl.ops import OPS
from cellsearch.ops.base import satisfies
from cellsearch.ops.stack import STACK_OPS

STATE_NAMES = ("h", "c", "m")
INPUT = "x"
STATIC = "cond"
MEMORY = "enc"
VALUES = "val"  # the second memory of cells(values_memory=True): attend(q, K, V)

# Simplest first: hypothesis shrinks a sampled_from towards the front of the list. Ops of the
# registry not listed here (added since) follow; they are drawn by their arity and domain.
_FIRST_OPS = ("tanh", "linear", "add", "mul", "sub", "sigmoid", "identity", "relu", "leaky_relu",
              "neg", "one_minus", "blend", "diag", "const", "attend", "address", "read", "write")
ALL_OPS = tuple(o for o in _FIRST_OPS if o in OPS) + tuple(o for o in OPS if o not in _FIRST_OPS)
MEMORY_STATE = "mem"
WEIGHTS_STATE = "mloc"
LOCATION_OPS = ("interpolate", "shift", "sharpen")  # (in _memory_head's location chain, in this order)
# Ops with their own rule below (and in _memory_head); every other op reads min_args vectors.
SPECIAL_OPS = ("linear", "const", "attend", "address", "read", "write", *STACK_OPS, *LOCATION_OPS)
assert all(not OPS[o].signature for o in ALL_OPS if o not in SPECIAL_OPS), \
    "an op over memories needs a rule in tests/generators.py"

UNARY_OPS = tuple(o for o in ALL_OPS if o not in SPECIAL_OPS and OPS[o].min_args == 1)
BINARY_OPS = tuple(o for o in ALL_OPS if o not in SPECIAL_OPS and OPS[o].min_args == 2)


def _maker(want: str) -> str:
    """A one-argument op without a domain whose result is always ``want`` (sigmoid for positive)."""
    return next(o for o in ALL_OPS if o not in SPECIAL_OPS and OPS[o].min_args == OPS[o].max_args == 1
                and OPS[o].domain is None and satisfies(OPS[o].result_range(None, [None]), want))

# Values that print and parse back exactly (any finite float does, these keep examples readable).
NUMBERS = (1.0, 0.5, -1.0, 2.0, -0.25, 0.0, 3.0, 1e-3, -1.5)


def _numbers() -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from(NUMBERS),
                     st.floats(min_value=-8.0, max_value=8.0, allow_nan=False, allow_infinity=False))


@st.composite
def cells(draw, *, max_nodes: int = 12, min_states: int = 1, max_states: int = 3,
          static: bool | None = None, elementwise_inputs: bool = True, dead: bool = True,
          ops: Iterable[str] | None = None, auto: bool = False, shuffle: bool = True,
          name: str = "random", memory: bool = False, memory_state: bool = False,
          favour: str | None = None, location: bool | None = False, values_memory: bool = False) -> CellGraph:
    """A random valid cell (see the module docstring).

    ``static``: None draws whether there is a static input ``cond``, True/False forces it.
    ``elementwise_inputs``: whether nodes other than ``linear`` may read ``x``/``cond``
    (if False the cell works for any input/static size). ``dead``: whether a cell may keep
    nodes that no state reads. ``ops``: the ops to draw from (default: all; ``linear`` is
    always available to the states). ``auto``: mark some single-reader nodes as auto
    (parser-invented), so the equation printer inlines them. ``shuffle``: whether the node
    list may come in a non-topological order. ``memory``: the cell has a memory ``enc`` and
    ``attend`` is among the ops (drawn more often, so most such cells use it). ``favour``: an op
    drawn much more often (the registry's per-op tests). An op with a domain (log: a positive
    argument) reads values known to be in it, made with e.g. sigmoid(...) where there is none.
    ``values_memory`` (with ``memory``): a second memory ``val``, and attend nodes draw their keys
    memory from both and a third argument, the values memory (``attend(q, K, V)``), most times.
    """
    ops = tuple(o for o in ALL_OPS if (ops is None or o in set(ops)) and (memory or o != "attend")
                and o not in ("address", "read", "write", *STACK_OPS, *LOCATION_OPS))  # (those: the memory-state head below)
    if memory and "attend" in ops:
        ops = (*ops, *["attend"] * 4)
    if favour is not None and favour in ops:
        ops = (*ops, *[favour] * 8)
    if not ops:
        raise ValueError("ops is empty")
    unknown = set(ops) - set(OPS)
    if unknown:  # pragma: no cover - guarded by the tuple above
        raise ValueError(f"unknown ops {unknown}")
    state_ops = tuple(o for o in ops if o != "const") or ("linear",)
    if "linear" in ops:  # real cells are mostly matmuls: draw linear more often
        ops = (*ops, "linear", "linear")
        state_ops = (*state_ops, "linear")

    n_states = draw(st.integers(min_states, max_states), label="n_states")
    states = STATE_NAMES[:n_states]
    has_static = draw(st.booleans(), label="static") if static is None else static
    static_leaves = (STATIC,) if has_static else ()
    n_nodes = draw(st.integers(n_states, max(max_nodes, n_states)), label="n_nodes")

    # Which slot defines which state: the last slot always defines one, so the last nodes
    # built have a chance to be read; the others go anywhere.
    last_state = draw(st.sampled_from(states), label="last_state")
    others = [s for s in states if s != last_state]
    slots = draw(st.lists(st.integers(0, n_nodes - 2), min_size=len(others), max_size=len(others),
                          unique=True), label="state_slots") if others else []
    slot_state = dict(zip(slots, others))
    slot_state[n_nodes - 1] = last_state

    # pool entries: name -> (constant?, elementwise-readable?)
    leaves = [INPUT, *static_leaves, *(prev_name(s) for s in states)]
    sized_leaves = {INPUT, *static_leaves}  # not hidden-sized in general
    constant: dict[str, bool] = {leaf: False for leaf in leaves}
    readers: dict[str, int] = {leaf: 0 for leaf in leaves}
    ranges: dict[str, str | None] = {leaf: None for leaf in leaves}  # what a value is known to be
    nodes: list[Node] = []
    counter = 0

    def candidates(*, allow_const: bool, elementwise: bool) -> list[str]:
        out = []
        for n in constant:
            if constant[n] and not allow_const:
                continue
            if elementwise and not elementwise_inputs and n in sized_leaves:
                continue
            out.append(n)
        return out

    def pick(cands: list[str], label: str) -> str:
        # Prefer names nobody reads yet, so that most nodes end up live.
        unread = [c for c in cands if readers[c] == 0 and c not in leaves]
        if unread and draw(st.booleans(), label=f"{label}_prefer_unread"):
            return draw(st.sampled_from(unread), label=label)
        return draw(st.sampled_from(cands), label=label)

    for slot in range(n_nodes):
        state = slot_state.get(slot)
        if state is None:
            node_name = f"n{counter}"
            counter += 1
            op = draw(st.sampled_from(ops), label="op")
        else:
            node_name = state
            op = draw(st.sampled_from(state_ops), label="state_op")
        attrs: dict = {}
        if op == "const":
            args: list[str] = []
            if draw(st.booleans(), label="const_value_given"):
                attrs["value"] = draw(_numbers(), label="value")
        elif op == "attend":
            args = [pick(candidates(allow_const=False, elementwise=True), "query"), MEMORY]
            if values_memory:
                args[1] = draw(st.sampled_from([MEMORY, VALUES]), label="keys")
                if draw(st.integers(0, 3), label="values?") > 0:
                    args.append(draw(st.sampled_from([MEMORY, VALUES]), label="values"))
            attrs["kind"] = draw(st.sampled_from(OPS["attend"].attrs["kind"].choices), label="kind")
        elif op == "linear":
            k = draw(st.integers(1, 3), label="linear_arity")
            cands = candidates(allow_const=False, elementwise=False)
            args = [pick(cands, "linear_arg") for _ in range(k)]
            attrs["bias"] = draw(st.sampled_from([True, True, False]), label="bias")
            if draw(st.booleans(), label="bias_init_given"):
                attrs["bias_init"] = draw(_numbers(), label="bias_init")
            if all(a not in sized_leaves for a in args) and draw(st.integers(0, 3), label="diag_init?") == 0:
                attrs["diag_init"] = draw(_numbers(), label="diag_init")
        else:
            arity = OPS[op].min_args
            if OPS[op].max_args is None:  # any number of arguments (mixed): a few
                arity = draw(st.integers(arity, arity + 2), label=f"{op}_arity")
            vectors = candidates(allow_const=False, elementwise=True)
            anything = candidates(allow_const=True, elementwise=True)
            want = OPS[op].domain
            if want is not None:  # only values known to be in the op's domain
                vectors = [c for c in vectors if satisfies(ranges[c], want)]
                anything = [c for c in anything if satisfies(ranges[c], want)]
                if not vectors:  # none yet: make one (e.g. sigmoid(x))
                    src = pick(candidates(allow_const=False, elementwise=True), f"{op}_source")
                    made = f"n{counter}"
                    counter += 1
                    maker = _maker(want)
                    nodes.append(Node.make(made, maker, [src]))
                    readers[src] += 1
                    constant[made], readers[made] = False, 0
                    ranges[made] = OPS[maker].result_range(None, [ranges[src]])
                    vectors, anything = [made], [*anything, made]
            # One argument (at a drawn position) is a vector so the node is not constant.
            vec_pos = draw(st.integers(0, arity - 1), label="vector_position")
            args = [pick(vectors if i == vec_pos else anything, f"{op}_arg") for i in range(arity)]
            if op == "leaky_relu" and draw(st.booleans(), label="slope_given"):
                attrs["slope"] = draw(st.sampled_from([0.1, 0.2, 0.01, 0.5]), label="slope")
            if op == "diag" and draw(st.booleans(), label="diag_init_given"):
                attrs["init"] = draw(_numbers(), label="init")
        node = Node.make(node_name, op, args, attrs)
        nodes.append(node)
        for a in args:
            if a not in (MEMORY, VALUES):
                readers[a] += 1
        ranges[node_name] = OPS[op].result_range(node, [ranges.get(a) for a in args])
        constant[node_name] = op == "const" or (bool(args) and all(constant.get(a, False) for a in args))
        readers[node_name] = 0

    all_states = states
    weight_states: tuple[str, ...] = ()
    if memory_state:
        vectors = [n for n in constant if not constant[n]]
        as_stack = location is not True and (favour in STACK_OPS or (
            favour not in ("address", "read", "write", *LOCATION_OPS) and draw(st.booleans(), label="stack_state")))
        with_location = False
        if as_stack:
            nodes += _stack_head(draw, vectors, nodes, favour)
        else:
            with_location = draw(st.booleans(), label="location") if location is None else location
            nodes += _memory_head(draw, vectors, nodes, favour if with_location else None, with_location)
        all_states = (*states, MEMORY_STATE)
        if with_location:
            all_states, weight_states = (*all_states, WEIGHTS_STATE), (WEIGHTS_STATE,)
    graph = CellGraph(name=name, inputs=(INPUT,), states=all_states, output=states[0], nodes=tuple(nodes),
                      static=static_leaves, memory=((MEMORY, VALUES) if values_memory else (MEMORY,)) if memory else (),
                      memory_states=(MEMORY_STATE,) if memory_state else (), weight_states=weight_states)
    keep_dead = dead and draw(st.integers(0, 3), label="keep_dead") == 0
    if not keep_dead:
        live = graph.live
        graph = graph.with_nodes(n for n in graph.nodes if n.name in live)
    if shuffle and draw(st.integers(0, 2), label="shuffle?") == 0:
        graph = graph.with_nodes(draw(st.permutations(graph.nodes), label="node_order"))
    if auto:
        consumers = graph.consumers
        marked = []
        for n in graph.nodes:
            if n.name not in graph.states and len(consumers.get(n.name, [])) == 1 \
                    and draw(st.booleans(), label="auto"):
                n = replace(n, auto=True)
            marked.append(n)
        graph = graph.with_nodes(marked)
    graph.validate(warn=False)  # a failure here is a bug in this strategy (or in validate)
    return graph


def _memory_head(draw, vectors: list[str], nodes: list[Node], favour: str | None = None,
                 location: bool = False) -> list[Node]:
    """An NTM read head and write head on the memory state ``mem``: the read joins one of the
    cell's linear nodes as an extra argument (``nodes`` is changed in place), keys and strengths
    are linear maps of random vectors of the cell. With ``location`` the read head's weights are
    the weights state ``mloc``: the content weights interpolated with ``mloc_prev``, then shift and
    sharpen, each drawn (``favour``, a location op, always in the chain)."""
    prev = prev_name(MEMORY_STATE)

    def vec(label: str) -> str:
        return draw(st.sampled_from(vectors), label=label)

    def lin(name: str) -> Node:
        return Node.make(name, "linear", [vec(f"{name}_src")])

    # the read head's key and strength come from leaves: a node might read the read's result
    leaves = [v for v in vectors if not any(n.name == v for n in nodes)]

    def leaf_lin(name: str) -> Node:
        return Node.make(name, "linear", [draw(st.sampled_from(leaves), label=f"{name}_src")])

    head = [leaf_lin("mk_r"), leaf_lin("mb_r"), Node.make("mw_r", "address", ["mk_r", prev, "mb_r"])]
    read_weights = "mw_r"
    if location:
        pair = ["mw_r", prev_name(WEIGHTS_STATE)]
        if draw(st.booleans(), label="interpolate_order"):
            pair.reverse()
        chain = [("interpolate", [*pair, "ml_g"])]
        for op, gate in (("shift", "ml_s"), ("sharpen", "ml_gamma")):
            if op == favour or draw(st.booleans(), label=f"{op}_in_chain"):
                chain.append((op, [None, gate]))
        last = None
        for k, (op, args) in enumerate(chain):
            name = WEIGHTS_STATE if k == len(chain) - 1 else f"ml_{op}"
            head.append(leaf_lin(args[-1]))
            head.append(Node.make(name, op, [a if a is not None else last for a in args]))
            last = name
        read_weights = WEIGHTS_STATE
    head.append(Node.make("mr", "read", [read_weights, prev]))
    linears = [i for i, n in enumerate(nodes) if n.op == "linear"]
    if linears:
        i = draw(st.sampled_from(linears), label="read_joins")
        nodes[i] = Node.make(nodes[i].name, "linear", [*nodes[i].args, "mr"], nodes[i].attr_dict)
    if draw(st.booleans(), label="own_write_weights"):
        head += [lin("mk_w"), lin("mb_w"), Node.make("mw_w", "address", ["mk_w", prev, "mb_w"])]
        weights = "mw_w"
    else:
        weights = "mw_r"
    head += [lin("me_lin"), Node.make("me", "sigmoid", ["me_lin"])]
    add = draw(st.sampled_from(["tanh", "vector"]), label="add_kind")
    if add == "tanh":
        head += [lin("ma_lin"), Node.make("ma", "tanh", ["ma_lin"])]
        add_arg = "ma"
    else:
        add_arg = draw(st.sampled_from([v for v in vectors if v not in (INPUT, STATIC)] or ["me"]), label="add")
    head.append(Node.make(MEMORY_STATE, "write", [prev, weights, "me", add_arg]))
    return head


def _stack_head(draw, vectors: list[str], nodes: list[Node], favour: str | None) -> list[Node]:
    """A stack on the memory state ``mem`` (Joulin & Mikolov): ``top`` (and ``below``) of the
    previous stack join linear nodes of the cell as extra arguments (``nodes`` is changed in
    place), the action scores are linear maps of random vectors, the pushed value a sigmoid of
    one or a vector of the cell."""
    prev = prev_name(MEMORY_STATE)

    def lin(name: str) -> Node:
        return Node.make(name, "linear", [draw(st.sampled_from(vectors), label=f"{name}_src")])

    head = [Node.make("st", "top", [prev])]
    if favour == "below" or draw(st.booleans(), label="read_below"):
        head.append(Node.make("sb", "below", [prev]))
    linears = [i for i, n in enumerate(nodes) if n.op == "linear"]
    for read in [n.name for n in head]:
        if linears:
            i = draw(st.sampled_from(linears), label=f"{read}_joins")
            nodes[i] = Node.make(nodes[i].name, "linear", [*nodes[i].args, read], nodes[i].attr_dict)
    head += [lin("s_push"), lin("s_pop"), lin("s_noop")]
    if draw(st.booleans(), label="push_sigmoid"):
        head += [lin("sv_lin"), Node.make("sv", "sigmoid", ["sv_lin"])]
        value = "sv"
    else:
        value = draw(st.sampled_from([v for v in vectors if v not in (INPUT, STATIC)] or ["s_push"]), label="push")
    head.append(Node.make(MEMORY_STATE, "stack", [prev, "s_push", "s_pop", "s_noop", value]))
    return head


# ---------------------------------------------------------------------- facts about a cell
def reads_inputs_elementwise(graph: CellGraph) -> bool:
    """Whether a node other than linear() reads an input or static input directly.

    Such a cell only works with input size (and static size) equal to hidden size.
    """
    sized = set(graph.inputs) | set(graph.static)
    return any(n.op != "linear" and any(a in sized for a in n.args) for n in graph.nodes)


def constant_nodes(graph: CellGraph) -> set[str]:
    """Nodes whose value reads no input and no state (const nodes and what combines only them)."""
    out: set[str] = set()
    for name in graph.order:
        node = graph.node_map[name]
        if all(a in out for a in node.args):  # const() has no args
            out.add(name)
    return out


# ---------------------------------------------------------------------- rewrites
def rename_nodes(graph: CellGraph, mapping: Mapping[str, str]) -> CellGraph:
    """The same cell with names replaced by ``mapping`` (old → new).

    Any name may be renamed: nodes, inputs, static inputs and states; renaming state ``s``
    to ``t`` also renames the leaf ``s_prev`` to ``t_prev`` (an explicit entry for
    ``s_prev`` is ignored). The caller keeps the new names distinct and valid; the result
    is not validated here.
    """
    m = {k: v for k, v in mapping.items() if k not in graph.prev_names}
    for s in graph.states:
        if s in m:
            m[prev_name(s)] = prev_name(m[s])

    def r(name: str) -> str:
        return m.get(name, name)

    nodes = tuple(replace(n, name=r(n.name), args=tuple(r(a) for a in n.args)) for n in graph.nodes)
    return replace(graph, inputs=tuple(map(r, graph.inputs)), static=tuple(map(r, graph.static)),
                   memory=tuple(map(r, graph.memory)), memory_states=tuple(map(r, graph.memory_states)),
                   weight_states=tuple(map(r, graph.weight_states)),
                   states=tuple(map(r, graph.states)), output=r(graph.output), nodes=nodes)


def random_renaming(graph: CellGraph, rng: random.Random, *, inputs: bool = True) -> dict[str, str]:
    """A bijective renaming of every node, state and (if ``inputs``) input to fresh names.

    Some new names look like the ones the equation parser invents (``h_add``...) or like
    other cells' names, to catch code that keys anything on a name.
    """
    old = [*(n.name for n in graph.nodes)]
    if inputs:
        old += [*graph.inputs, *graph.static, *graph.memory]
    stems = ["v", "gate", "h_add", "c_mul", "z", "state", "n", "tmp", "x_lin", "out"]
    taken = set(old) | set(graph.prev_names)
    new: dict[str, str] = {}
    for name in old:
        while True:
            cand = f"{rng.choice(stems)}{rng.randrange(1000)}"
            if cand not in taken and not cand.endswith("_prev"):
                break
        taken.add(cand)
        new[name] = cand
    # the *_prev leaves of renamed states must not collide either
    for s in graph.states:
        assert prev_name(new[s]) not in taken
    return new


def shuffle_commutative(graph: CellGraph, rng: random.Random, *, reorder_nodes: bool = False) -> CellGraph:
    """Permute the arguments of every commutative op (add, mul, linear).

    A linear's attributes belong to the node, not to an argument, and each argument keeps
    its own weight, so the cell is the same up to a permutation of its parameters. With
    ``reorder_nodes`` the node list is shuffled too (the evaluation order is derived).
    """
    nodes = []
    for n in graph.nodes:
        if OPS[n.op].commutative and len(n.args) > 1:
            n = replace(n, args=tuple(rng.sample(n.args, len(n.args))))
        nodes.append(n)
    if reorder_nodes:
        rng.shuffle(nodes)
    return graph.with_nodes(nodes)


def add_dead_node(graph: CellGraph, rng: random.Random, *, name: str | None = None,
                  elementwise_inputs: bool = True) -> CellGraph:
    """The cell plus one node (``name`` or a fresh one) that no state depends on.

    The node reads only non-constant names, so the result still validates (with a warning).
    """
    existing = set(graph.node_map) | set(graph.leaf_kinds)
    if name is None:
        k = 0
        while f"dead{k}" in existing:
            k += 1
        name = f"dead{k}"
    consts = constant_nodes(graph)
    sized = set(graph.inputs) | set(graph.static)
    vectors = [v for v in [*graph.leaf_kinds, *graph.node_map] if v not in consts and v not in graph.memory]
    hidden = [v for v in vectors if v not in sized] if not elementwise_inputs else vectors
    op = rng.choice(["tanh", "sigmoid", "linear", "add", "mul", "diag", "blend", "sub"])
    if op == "linear":
        args = rng.sample(vectors, min(len(vectors), rng.randint(1, 2)))
    else:
        arity = OPS[op].min_args
        args = [rng.choice(hidden) for _ in range(arity)]
    return graph.with_nodes([*graph.nodes, Node.make(name, op, args)])

"""NAS-Bench-NLP interoperability: recipes ↔ cells.

NAS-Bench-NLP (Klyuchnikov et al. 2020) describes a recurrent cell as a *recipe*, a JSON
object mapping a node name to ``{"op": ..., "input": [...]}``. The leaves are ``x`` (the
per-step input) and ``h_prev_N`` (the previous value of hidden state N); the node named
``h_new_N`` is state N's new value and ``h_new_0`` is the cell's output. A recipe file is a
JSON list of recipes.

``recipe_to_cell`` turns a recipe into a ``CellGraph`` with input ``x``, states ``h0``,
``h1``, ... (state N ↔ ``h_new_N`` / ``h_prev_N``, so ``h_prev_N`` becomes ``hN_prev``) and
output ``h0``. Every other node keeps its recipe name, except a name our cells reserve or
cannot spell: ``x``, ``hN`` and ``hN_prev`` (for any N), ``true``/``false``, keywords,
non-identifiers and names starting with ``__``. Those get a deterministic, readable new name
(``h1`` → ``h1_node``, ``node-3`` → ``node_3``; a counter is added where that is taken).

Ops map one to one (``elementwise_sum`` → ``add``, ``elementwise_prod`` → ``mul``,
``activation_sigm`` → ``sigmoid``, ``activation_tanh`` → ``tanh``,
``activation_leaky_relu`` → ``leaky_relu`` (slope 0.01, torch's default, as in NAS-Bench-NLP),
``linear`` → ``linear`` with one weight per input and a bias, ``blend`` → ``blend``). NAS-Bench-NLP
folds an elementwise op with more than two inputs from the left, so ``sum(a, b, c)`` becomes
``add(add(a, b), c)`` (the inner node is an auto node, printed inline). ``cell_to_recipe``
writes such chains back as binary nodes (the inner node keeps its name, e.g. ``s_add``):
the structure and the hash are the same, and NAS-Bench-NLP's own code only handles
elementwise ops with more than two inputs by accident of a loop variable.

``cell_to_recipe`` is the inverse for cells that only use these ops (with default
attributes), one per-step input and no static input.
"""

from __future__ import annotations

import difflib
import json
import keyword
import os
import re
from pathlib import Path
from typing import Any

from cellsearch import limits
from cellsearch.dsl.graph import CellGraph, Node, cell_name_from, prev_name
from cellsearch.dsl.io import dumps_cell, read_source, save_cell
from cellsearch.errors import CellError, ConfigError

SOURCE = "NAS-Bench-NLP (Klyuchnikov et al. 2020)"

INPUT = "x"
OUTPUT_STATE = 0

# NAS-Bench-NLP op → (our op, minimum inputs, maximum inputs or None for any number)
RECIPE_OPS: dict[str, tuple[str, int, int | None]] = {
    "linear": ("linear", 1, None),
    "blend": ("blend", 3, 3),
    "elementwise_prod": ("mul", 2, None),
    "elementwise_sum": ("add", 2, None),
    "activation_tanh": ("tanh", 1, 1),
    "activation_sigm": ("sigmoid", 1, 1),
    "activation_leaky_relu": ("leaky_relu", 1, 1),
}
# our op → NAS-Bench-NLP op (only with default attributes, see ``cell_to_recipe``)
CELL_OPS: dict[str, str] = {ours: theirs for theirs, (ours, _, _) in RECIPE_OPS.items()}

_STATE_RE = re.compile(r"h_(new|prev)_(\d+)")
_RESERVED_RE = re.compile(r"h\d+(_prev)?")
_RESERVED = {INPUT, "true", "false"}


def state_name(index: int) -> str:
    """Our name of NAS-Bench-NLP's hidden state ``index``: ``h0``, ``h1``, ..."""
    return f"h{index}"


def _arity_text(lo: int, hi: int | None) -> str:
    if hi is None:
        return f"at least {lo}"
    return str(lo) if lo == hi else f"{lo} to {hi}"


def _state_ref(name: str, where: str, node: str | None) -> tuple[str, int] | None:
    """("new" | "prev", N) for ``h_new_N`` / ``h_prev_N``, None for any other name."""
    m = _STATE_RE.fullmatch(name)
    if m is None:
        return None
    kind, digits = m.groups()
    if digits != str(int(digits)):
        raise CellError(f"ambiguous state name '{name}': write the state index without leading zeros "
                        f"('h_{kind}_{int(digits)}')", node=node, source=where)
    return kind, int(digits)


def _is_reserved(name: str) -> bool:
    # non-ASCII identifiers too: cells only take ASCII names (see graph.check_name)
    return (name in _RESERVED or _RESERVED_RE.fullmatch(name) is not None or not name.isascii()
            or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("__"))


def _readable(name: str) -> str:
    """``name`` made into an identifier (non-word characters → ``_``, no leading ``__``/digit)."""
    base = re.sub(r"\W", "_", name, flags=re.ASCII).lstrip("_")
    if not base:
        base = "node"
    if base[0].isdigit():
        base = "n" + base
    return base


def _fresh(base: str, taken: set[str], suffix: str = "_node") -> str:
    """``base`` if it is free and allowed, else ``base + suffix``, ``base + suffix + "2"``, ..."""
    if base not in taken and not _is_reserved(base):
        taken.add(base)
        return base
    k = 1
    while True:
        name = f"{base}{suffix}{k if k > 1 else ''}"
        if name not in taken and not _is_reserved(name):
            taken.add(name)
            return name
        k += 1


# ---------------------------------------------------------------------- recipe → cell
def recipe_to_cell(recipe: dict, name: str) -> CellGraph:
    """The cell a NAS-Bench-NLP recipe describes (validated); see the module docstring.

    Raises CellError, naming the recipe and the node, for a malformed recipe, an unknown op,
    a wrong number of inputs, an undefined input, a missing ``h_new_0``, a state that is read
    but never updated (or a gap in the state indices), or a cycle.
    """
    where = f"recipe '{name}'"
    if not isinstance(recipe, dict):
        raise CellError(f"a recipe must be a JSON object mapping node name to "
                        f'{{"op": ..., "input": [...]}}, got {type(recipe).__name__}', source=where)
    if not recipe:
        raise CellError("the recipe is empty (it needs at least the node 'h_new_0')", source=where)

    # -- structure, ops and arities
    specs: dict[str, tuple[str, list[str]]] = {}
    for key, spec in recipe.items():
        if not isinstance(key, str):
            raise CellError(f"node names must be strings, got {key!r}", source=where)
        if not isinstance(spec, dict):
            raise CellError(f'a node must be an object {{"op": ..., "input": [...]}}, got {spec!r}',
                            node=key, source=where)
        extra = [k for k in spec if k not in ("op", "input")]
        if extra:
            raise CellError(f"unknown field(s) {', '.join(map(repr, extra))} (allowed: 'op', 'input')",
                            node=key, source=where)
        op = spec.get("op")
        if not isinstance(op, str):
            raise CellError(f"missing or invalid 'op' (a string such as 'linear'), got {op!r}",
                            node=key, source=where)
        if op not in RECIPE_OPS:
            raise CellError(f"unknown op '{op}' (NAS-Bench-NLP ops: {', '.join(RECIPE_OPS)})",
                            node=key, source=where)
        inputs = spec.get("input")
        if not isinstance(inputs, list) or not all(isinstance(a, str) for a in inputs):
            raise CellError(f"'input' must be a list of node names, got {inputs!r}", node=key, source=where)
        _, lo, hi = RECIPE_OPS[op]
        if len(inputs) < lo or (hi is not None and len(inputs) > hi):
            raise CellError(f"{op} takes {_arity_text(lo, hi)} input(s), got {len(inputs)}",
                            node=key, source=where)
        if key == INPUT:
            raise CellError(f"'{INPUT}' is the input of the cell and cannot be defined as a node",
                            node=key, source=where)
        ref = _state_ref(key, where, key)
        if ref is not None and ref[0] == "prev":
            raise CellError(f"'{key}' is the previous value of state {ref[1]} and cannot be defined as a node "
                            f"(define 'h_new_{ref[1]}' instead)", node=key, source=where)
        specs[key] = (op, list(inputs))

    # -- states and undefined inputs
    updated = {ref[1] for k in specs if (ref := _state_ref(k, where, k)) is not None}
    read: dict[int, str] = {}  # state index → first node reading its previous value
    for key, (op, inputs) in specs.items():
        for a in inputs:
            if a == INPUT or a in specs:
                continue
            ref = _state_ref(a, where, key)
            if ref is not None and ref[0] == "prev":
                read.setdefault(ref[1], key)
                continue
            known = [INPUT, *specs, *(f"h_prev_{n}" for n in sorted(updated))]
            close = difflib.get_close_matches(a, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise CellError(f"undefined input '{a}'{hint}: an input must be '{INPUT}', 'h_prev_N' "
                            "or a node of the recipe", node=key, source=where)
    if OUTPUT_STATE not in updated:
        raise CellError("missing 'h_new_0': the recipe must define the new value of state 0 "
                        "(the output of the cell)", source=where)
    for n, reader in sorted(read.items()):
        if n not in updated:
            raise CellError(f"reads 'h_prev_{n}' but the recipe never defines 'h_new_{n}' "
                            f"(state {n} is never updated)", node=reader, source=where)
    indices = sorted(updated)
    missing = [n for n in range(indices[-1] + 1) if n not in updated]
    if missing:
        raise CellError(f"the states must be numbered 0, 1, 2, ... without gaps: 'h_new_{missing[0]}' "
                        f"is missing but 'h_new_{indices[-1]}' is defined", source=where)

    # -- cycles, in the recipe's own terms
    _check_acyclic(specs, where)

    # -- names
    renamed: dict[str, str] = {INPUT: INPUT}
    for n in indices:
        renamed[f"h_new_{n}"] = state_name(n)
        renamed[f"h_prev_{n}"] = prev_name(state_name(n))
    taken: set[str] = set(renamed.values())
    plain = [k for k in specs if k not in renamed]
    for k in plain:  # names kept as they are go first, so a renamed node never takes one
        if not _is_reserved(k):
            renamed[k] = k
            taken.add(k)
    for k in plain:
        if k not in renamed:
            renamed[k] = _fresh(_readable(k), taken)
    origin = {ours: theirs for theirs, ours in renamed.items()}

    # -- nodes
    nodes: list[Node] = []
    for key, (op, inputs) in specs.items():
        ours = RECIPE_OPS[op][0]
        node_name = renamed[key]
        args = [renamed[a] for a in inputs]
        if ours in ("add", "mul") and len(args) > 2:  # fold from the left, as NAS-Bench-NLP does
            acc = args[0]
            for a in args[1:-1]:
                inner = _fresh(f"{node_name}_{ours}", taken, suffix="")
                origin[inner] = key
                nodes.append(Node.make(inner, ours, (acc, a), auto=True))
                acc = inner
            args = [acc, args[-1]]
        nodes.append(Node.make(node_name, ours, args))

    states = tuple(state_name(n) for n in indices)
    n_linear = sum(1 for op, _ in specs.values() if op == "linear")
    graph = CellGraph(
        name=name, inputs=(INPUT,), states=states, output=state_name(OUTPUT_STATE), nodes=tuple(nodes),
        description=(f"Imported from a NAS-Bench-NLP recipe: {len(specs)} nodes ({n_linear} linear), "
                     f"{len(states)} state{'s' if len(states) != 1 else ''}."),
        source=SOURCE)
    try:
        graph.validate(warn=False)
    except CellError as exc:
        node = origin.get(exc.node, exc.node) if exc.node else None
        raise CellError(exc.reason, node=node, source=where) from None
    return graph


def _check_acyclic(specs: dict[str, tuple[str, list[str]]], where: str) -> None:
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(name: str) -> None:
        # iterative DFS (recipes are small, but a hostile one should not hit the recursion limit)
        stack: list[tuple[str, int]] = [(name, 0)]
        path.append(name)
        on_path.add(name)
        while stack:
            node, i = stack[-1]
            inputs = specs[node][1]
            if i == len(inputs):
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            stack[-1] = (node, i + 1)
            a = inputs[i]
            if a not in specs or a in done:
                continue
            if a in on_path:
                cycle = path[path.index(a):] + [a]
                raise CellError("cycle inside one step: " + " -> ".join(reversed(cycle))
                                + " (to read last step's value of state N, use 'h_prev_N')",
                                node=a, source=where)
            stack.append((a, 0))
            path.append(a)
            on_path.add(a)

    for k in specs:
        if k not in done:
            visit(k)


# ---------------------------------------------------------------------- cell → recipe
def cell_to_recipe(graph: CellGraph) -> dict:
    """The NAS-Bench-NLP recipe of a cell that only uses ops NAS-Bench-NLP can express.

    The output state becomes state 0, the other states 1, 2, ... in ``graph.states`` order;
    the per-step input becomes ``x``. Nodes keep their names except where a name means
    something in a recipe (``x``, ``h_new_N``, ``h_prev_N``); those get ``_node`` appended.
    Raises CellError (naming the node and op) for an op without a NAS-Bench-NLP counterpart,
    an op with non-default attributes (e.g. ``linear(bias=false)``, ``bias_init``, a leaky_relu
    slope other than 0.01), more than one per-step input, or a static input.
    """
    where = f"cell '{graph.name}'"
    if len(graph.inputs) != 1:
        raise CellError(f"NAS-Bench-NLP cells have exactly one per-step input ('x'), this cell has "
                        f"{len(graph.inputs)} ({', '.join(graph.inputs) or 'none'})", source=where)
    if graph.memory:
        raise CellError(f"NAS-Bench-NLP cells have no memory, this cell has {', '.join(graph.memory)}",
                        source=where)
    if graph.static:
        raise CellError(f"NAS-Bench-NLP cells have no static inputs, this cell has {', '.join(graph.static)}",
                        source=where)
    for n in graph.nodes:
        if n.op not in CELL_OPS:
            expressible = ", ".join(CELL_OPS)
            raise CellError(f"op '{n.op}' has no NAS-Bench-NLP counterpart (expressible ops: {expressible})",
                            node=n.name, source=where)
        if n.attrs:
            attrs = ", ".join(f"{k}={v!r}" for k, v in n.attrs)
            raise CellError(f"op '{n.op}' with {attrs} cannot be expressed in NAS-Bench-NLP "
                            f"(only {n.op} with default attributes can)", node=n.name, source=where)
    order = [graph.output, *(s for s in graph.states if s != graph.output)]
    renamed: dict[str, str] = {graph.inputs[0]: INPUT}
    for i, s in enumerate(order):
        renamed[s] = f"h_new_{i}"
        renamed[prev_name(s)] = f"h_prev_{i}"
    taken = set(renamed.values())
    others = [n.name for n in graph.nodes if n.name not in renamed]

    def means_something(name: str) -> bool:
        return name == INPUT or _STATE_RE.fullmatch(name) is not None

    for name in others:
        if not means_something(name):
            renamed[name] = name
            taken.add(name)
    for name in others:
        if name not in renamed:
            k, new = 1, f"{name}_node"
            while new in taken:
                k += 1
                new = f"{name}_node{k}"
            renamed[name] = new
            taken.add(new)
    return {renamed[n.name]: {"op": CELL_OPS[n.op], "input": [renamed[a] for a in n.args]}
            for n in graph.nodes}


# ---------------------------------------------------------------------- files
def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key '{k}'")
        out[k] = v
    return out


def decode_recipe(recipe: Any) -> Any:
    """A recipe given as an object, or as a JSON string (as NAS-Bench-NLP's logs store them).

    Raises ValueError (a ``json.JSONDecodeError`` for bad JSON) for a string that is not JSON,
    repeats a key or nests deeper than Python's JSON decoder can follow."""
    return _json_loads(recipe) if isinstance(recipe, str) else recipe


def _json_loads(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:  # the decoder recurses once per nesting level
        raise ValueError("nested deeper than Python's recursion limit lets the JSON decoder follow "
                         "(a recipe is 3 levels deep)") from None


def load_recipes(path: str | os.PathLike) -> list[CellGraph]:
    """The cells of a NAS-Bench-NLP recipe file, named ``<file stem>_<index>``.

    The file holds a JSON list of recipes (an entry may also be a recipe serialised as a JSON
    string, as NAS-Bench-NLP's logs store them) or a single recipe object (then the cell is
    ``<file stem>_0``). Raises CellError with the file path for a missing or unreadable file,
    bad JSON, a duplicate key, or an invalid recipe (with its index and node).
    """
    path = Path(path)
    text = read_source(path, "a JSON list of NAS-Bench-NLP recipes", limit="recipe file size",
                       maximum=limits.MAX_RECIPE_FILE_BYTES)
    try:
        data = _json_loads(text)
    except json.JSONDecodeError as exc:
        raise CellError(f"invalid JSON: {exc.msg} (column {exc.colno})", source=str(path), line=exc.lineno) from None
    except ValueError as exc:
        raise CellError(f"invalid recipe file: {exc}", source=str(path)) from None
    if isinstance(data, dict):
        recipes = [data]
    elif isinstance(data, list):
        recipes = data
    else:
        raise CellError(f"expected a JSON list of recipes or a single recipe object, got {type(data).__name__}",
                        source=str(path))
    cells = []
    for i, recipe in enumerate(recipes):
        name = cell_name_from(f"{path.stem}_{i}")
        where = f"{path}: recipe {i}"
        try:
            recipe = decode_recipe(recipe)
        except ValueError as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise CellError(f"invalid JSON in the recipe string: {msg}", source=where) from None
        try:
            cells.append(recipe_to_cell(recipe, name))
        except CellError as exc:
            raise CellError(exc.reason, node=exc.node, source=f"{where} ('{name}')") from None
    return cells


def import_recipes(path: str | os.PathLike, out_dir: str | os.PathLike, *, force: bool = False) -> list[Path]:
    """Convert a recipe file into one YAML cell file per recipe (``<out_dir>/<name>.yaml``).

    Everything is converted and every target checked before anything is written, so a bad
    recipe or a refused target leaves ``out_dir`` untouched. A target that already holds exactly
    the imported cell is left as it is; one with other contents (e.g. edited by hand) is only
    overwritten with ``force``, else ConfigError names the first. Each cell's soft problems (an
    input it never reads, a node no state uses) are warned about as ``CellWarning``, as loading
    the written file would. Returns the paths written, in recipe order.
    """
    cells = load_recipes(path)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is not a directory: give the directory for the YAML cells",
                          field="import_recipes.out_dir")
    limits.check_new_path("import_recipes.out_dir", out)
    for g in cells:  # (every name before the first file: a name the file system refuses would leave half of them)
        limits.check_file_name("cell file", f"{g.name}.yaml")
    texts = {out / f"{g.name}.yaml": dumps_cell(g) for g in cells}
    todo = [p for p, text in texts.items() if not _holds(p, text)]
    for p in todo:
        if p.is_dir():  # not even --force replaces a directory
            raise ConfigError(f"{p} is a directory, not a cell file: nothing was written")
    if not force:
        taken = [p for p in todo if os.path.lexists(p)]
        if taken:
            more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
            raise ConfigError(f"{taken[0]} already exists{more} with other contents: nothing was written; "
                              "set force to overwrite", field="import_recipes.force")
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = [save_cell(g, p, form="equations") for g, p in zip(cells, texts) if p in todo]
    except OSError as exc:
        raise ConfigError(f"cannot write the cells to {out}: {exc.strerror or exc}") from None
    for g in cells:
        # load_recipes validated without warnings (a NAS-Bench-NLP table holds thousands of
        # recipes); an imported cell warns here as `cellsearch cells check` warns for its file
        g.validate()
    return written


def _holds(path: Path, text: str) -> bool:
    """Whether ``path`` is a file that already holds ``text`` (the size first: a file in the way
    may be anything, of any size)."""
    data = text.encode("utf-8")
    try:
        return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False  # unreadable: it differs, so only --force replaces it


__all__ = ["RECIPE_OPS", "CELL_OPS", "SOURCE", "recipe_to_cell", "cell_to_recipe", "decode_recipe",
           "load_recipes", "import_recipes", "state_name"]

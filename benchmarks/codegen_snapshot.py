"""A fingerprint of every piece of source cellsearch generates for a cell, to prove a refactor kept it byte-identical.

For every built-in cell (``cellsearch.library``) and for 400 random cells drawn with a fixed seed
by the generator below (every op of the op table, attend over a memory, an NTM head on a memory
state, static inputs, constants, shuffled node order, auto nodes), it writes
``{cell id: {generator: sha256 of the text}}`` as JSON, the generators being

* ``compile[I,H,S]``: the compiler's generated ``prologue``/``step``/``step_backward`` source
  (``CellProgram(...).source``), at two size settings where the cell allows them;
* ``fused_interpret`` / ``fused_gpu``: the fused Triton kernels and host code (``compile/fused.py``)
  in both variants (``TRITON_INTERPRET=1``: the interpreter's tanh formula; unset: libdevice), for
  cells with recurrent states and no memory (the fused runtime refuses the others);
* ``export_py``: the standalone module ``export/pysource.py`` writes;
* ``equations``, ``yaml_equations``, ``yaml_graph``, ``hash``: the equation printer, the YAML
  dump in both forms and the structural hash (the DSL side of an op's definition).

A generator that raises records ``error: <type>: <message>`` instead, so a change of which cells a
backend accepts shows too.

The check (run it before and after a change, then compare)::

    PYTHONPATH=$PWD python benchmarks/codegen_snapshot.py --out /tmp/before.json
    ... change the code ...
    PYTHONPATH=$PWD python benchmarks/codegen_snapshot.py --out /tmp/after.json
    cmp /tmp/before.json /tmp/after.json     # must print nothing and exit 0

``--dump DIR`` also writes every text to ``DIR/<cell id>/<generator>.txt`` for ``diff -r``.
It needs no GPU (Triton is imported for the kernel sources only, nothing is launched).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
from dataclasses import replace
from pathlib import Path

from cellsearch.compile.codegen import CellProgram
from cellsearch.compile.fused import generate_fused
from cellsearch.dsl.graph import CellGraph, Node, prev_name
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import dumps_cell
from cellsearch.export.pysource import equation_lines, python_source
from cellsearch.library import builtin_names, get_cell

SEED = 20251207
RANDOM_CELLS = 400
STATES = ("h", "c", "m")
ATTENTION_KINDS = ("dot", "general", "additive")
# The ops the snapshot's random cells draw from: fixed here (not read from the op table), so
# adding an op to the table does not change the 400 cells.
UNARY = ("tanh", "sigmoid", "identity", "relu", "leaky_relu", "neg", "one_minus", "diag")
BINARY = ("add", "mul", "sub")
NODE_OPS = ("tanh", "linear", "add", "mul", "sub", "sigmoid", "identity", "relu", "leaky_relu",
            "neg", "one_minus", "blend", "diag", "const", "linear", "linear")
NUMBERS = (1.0, 0.5, -1.0, 2.0, -0.25, 0.0, 3.0, 1e-3, -1.5, 0.7310585786300049)


def random_cell(rng: random.Random, index: int) -> CellGraph:
    """One random valid cell (a seeded port of tests/generators.py's ``cells``)."""
    memory = rng.random() < 0.15
    memory_state = not memory and rng.random() < 0.12
    elementwise_inputs = rng.random() < 0.5
    ops = NODE_OPS + (("attend",) * 4 if memory else ())
    state_ops = tuple(o for o in ops if o != "const")
    n_states = rng.randint(1, 3)
    states = STATES[:n_states]
    static = ("cond",) if rng.random() < 0.4 else ()
    n_nodes = rng.randint(n_states, 12)
    last = rng.choice(states)
    others = [s for s in states if s != last]
    slot_state = dict(zip(rng.sample(range(n_nodes - 1), len(others)), others)) if others else {}
    slot_state[n_nodes - 1] = last
    leaves = ["x", *static, *(prev_name(s) for s in states)]
    sized = {"x", *static}
    constant = {leaf: False for leaf in leaves}
    readers = {leaf: 0 for leaf in leaves}
    nodes: list[Node] = []

    def cands(allow_const: bool, elementwise: bool) -> list[str]:
        return [n for n in constant if (allow_const or not constant[n])
                and not (elementwise and not elementwise_inputs and n in sized)]

    def pick(c: list[str]) -> str:
        unread = [n for n in c if readers[n] == 0 and n not in leaves]
        return rng.choice(unread) if unread and rng.random() < 0.5 else rng.choice(c)

    counter = 0
    for slot in range(n_nodes):
        name = slot_state.get(slot)
        if name is None:
            name, counter = f"n{counter}", counter + 1
            op = rng.choice(ops)
        else:
            op = rng.choice(state_ops)
        attrs: dict = {}
        if op == "const":
            args: list[str] = []
            if rng.random() < 0.5:
                attrs["value"] = rng.choice(NUMBERS)
        elif op == "attend":
            args = [pick(cands(False, True)), "enc"]
            attrs["kind"] = rng.choice(ATTENTION_KINDS)
        elif op == "linear":
            args = [pick(cands(False, False)) for _ in range(rng.randint(1, 3))]
            attrs["bias"] = rng.choice([True, True, False])
            if rng.random() < 0.5:
                attrs["bias_init"] = rng.choice(NUMBERS)
            if all(a not in sized for a in args) and rng.random() < 0.25:
                attrs["diag_init"] = rng.choice(NUMBERS)
        else:
            arity = 1 if op in UNARY else 2 if op in BINARY else 3
            vec = rng.randrange(arity)
            args = [pick(cands(i != vec, True)) for i in range(arity)]
            if op == "leaky_relu" and rng.random() < 0.5:
                attrs["slope"] = rng.choice([0.1, 0.2, 0.01, 0.5])
            if op == "diag" and rng.random() < 0.5:
                attrs["init"] = rng.choice(NUMBERS)
        nodes.append(Node.make(name, op, args, attrs))
        for a in args:
            if a != "enc":
                readers[a] += 1
        constant[name] = op == "const" or (bool(args) and all(constant.get(a, False) for a in args))
        readers[name] = 0
    all_states = states
    if memory_state:
        nodes += _memory_head(rng, [n for n in constant if not constant[n]], nodes)
        all_states = (*states, "mem")
    g = CellGraph(name=f"random{index}", inputs=("x",), states=all_states, output=states[0], nodes=tuple(nodes),
                  static=static, memory=("enc",) if memory else (), memory_states=("mem",) if memory_state else ())
    if rng.random() < 0.75:
        live = g.live
        g = g.with_nodes(n for n in g.nodes if n.name in live)
    if rng.random() < 0.33:
        order = list(g.nodes)
        rng.shuffle(order)
        g = g.with_nodes(order)
    if rng.random() < 0.3:
        consumers = g.consumers
        g = g.with_nodes(replace(n, auto=True) if n.name not in g.states and len(consumers.get(n.name, [])) == 1
                         and rng.random() < 0.5 else n for n in g.nodes)
    g.validate(warn=False)
    return g


def _memory_head(rng: random.Random, vectors: list[str], nodes: list[Node]) -> list[Node]:
    """An NTM read and write head on the memory state ``mem`` (changes one linear of ``nodes``)."""
    prev = prev_name("mem")
    leaves = [v for v in vectors if not any(n.name == v for n in nodes)]
    head = [Node.make("mk_r", "linear", [rng.choice(leaves)]), Node.make("mb_r", "linear", [rng.choice(leaves)]),
            Node.make("mw_r", "address", ["mk_r", prev, "mb_r"]), Node.make("mr", "read", ["mw_r", prev])]
    linears = [i for i, n in enumerate(nodes) if n.op == "linear"]
    if linears:
        i = rng.choice(linears)
        nodes[i] = Node.make(nodes[i].name, "linear", [*nodes[i].args, "mr"], nodes[i].attr_dict)
    weights = "mw_r"
    if rng.random() < 0.5:
        head += [Node.make("mk_w", "linear", [rng.choice(vectors)]), Node.make("mb_w", "linear", [rng.choice(vectors)]),
                 Node.make("mw_w", "address", ["mk_w", prev, "mb_w"])]
        weights = "mw_w"
    head += [Node.make("me_lin", "linear", [rng.choice(vectors)]), Node.make("me", "sigmoid", ["me_lin"])]
    if rng.random() < 0.5:
        head += [Node.make("ma_lin", "linear", [rng.choice(vectors)]), Node.make("ma", "tanh", ["ma_lin"])]
        add = "ma"
    else:
        add = rng.choice([v for v in vectors if v not in ("x", "cond")] or ["me"])
    head.append(Node.make("mem", "write", [prev, weights, "me", add]))
    return head


def random_cells(n: int = RANDOM_CELLS, seed: int = SEED) -> list[CellGraph]:
    """``n`` random valid cells from ``seed`` (a draw the validator rejects is drawn again)."""
    rng = random.Random(seed)
    out: list[CellGraph] = []
    while len(out) < n:
        try:
            out.append(random_cell(rng, len(out)))
        except Exception:  # noqa: BLE001 - a rejected draw; the next one replaces it
            continue
    return out


def _sizes(g: CellGraph) -> list[tuple[int, int, int | None]]:
    sized_elementwise = any(n.op != "linear" and any(a in (*g.inputs, *g.static) for a in n.args) for n in g.nodes)
    static = 8 if g.static else None
    out = [(8, 8, static)]
    if not sized_elementwise:
        out.append((5, 8, 3 if g.static else None))
    return out


def _fused(program: CellProgram, interpret: bool) -> str:
    """The fused source of ``program`` in one variant (``fused.interpreting()`` reads the variable)."""
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1" if interpret else "0"
    try:
        return generate_fused(program)[0].source
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old


def texts(g: CellGraph) -> dict[str, str]:
    """Every generated text of cell ``g``, by generator."""
    out: dict[str, str] = {}

    def run(key: str, make) -> None:
        try:
            out[key] = make()
        except Exception as exc:  # noqa: BLE001 - which cells a generator refuses is part of the snapshot
            out[key] = f"error: {type(exc).__name__}: {exc}"

    out["hash"] = canonical_hash(g)
    run("equations", lambda: "\n".join(equation_lines(g)))
    run("yaml_equations", lambda: dumps_cell(g, "equations"))
    run("yaml_graph", lambda: dumps_cell(g, "graph"))
    for I, H, S in _sizes(g):
        tag = f"[{I},{H},{S}]"
        run(f"compile{tag}", lambda: CellProgram(g, I, H, S).source)
        run(f"export_py{tag}", lambda: python_source(g, I, H, S))
        if g.states and not g.memory and not g.memory_states:
            if CellProgram(g, I, H, S).schedule.recurrent_states:
                # a fresh program each: generating allocates names in the program's namespace
                run(f"fused_interpret{tag}", lambda: _fused(CellProgram(g, I, H, S), True))
                run(f"fused_gpu{tag}", lambda: _fused(CellProgram(g, I, H, S), False))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--dump", help="also write every text under this folder")
    parser.add_argument("--cells", type=int, default=RANDOM_CELLS, help="how many random cells")
    args = parser.parse_args(argv)
    cells = [(f"builtin:{name}", get_cell(name)) for name in builtin_names()]
    cells += [(f"random:{i:03d}", g) for i, g in enumerate(random_cells(args.cells))]
    snapshot: dict[str, dict[str, str]] = {}
    refused = 0
    for cid, g in cells:
        t = texts(g)
        refused += sum(v.startswith("error: ") for v in t.values())
        snapshot[cid] = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in sorted(t.items())}
        if args.dump:
            folder = Path(args.dump) / cid.replace(":", "_")
            folder.mkdir(parents=True, exist_ok=True)
            for k, v in t.items():
                (folder / f"{k}.txt").write_text(v)
    Path(args.out).write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    print(f"{len(snapshot)} cells, {sum(len(c) for c in snapshot.values())} texts, "
          f"{refused} refused by a generator -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

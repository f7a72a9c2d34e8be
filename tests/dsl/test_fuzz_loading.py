"""Property tests for loading cells and search spaces from hostile input.

Random bytes, random text, YAML-shaped token soup, random YAML structures and equation-like
strings are fed to the cell loaders (``loads_cell``, ``load_cell``, ``cell_from_dict``) and the
space loaders (``load_space`` on a file and on a mapping). Whatever comes in, a load either
succeeds or raises a ``CellsearchError`` whose message is one line: any other exception (a
RecursionError, an OverflowError, a ReaderError...) would be a traceback on the command line.
The ``@example`` seeds are the known attacks (see tests/test_limits.py for their messages).
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cellsearch.dsl.io import cell_from_dict, load_cell, loads_cell
from cellsearch.dsl.ops import ACTIVATIONS, OPS
from cellsearch.errors import CellsearchError, CellWarning
from cellsearch.spaces.registry import load_space
from cellsearch.spaces.vocabulary import KINDS

# Derandomized by the profile in conftest.py; small budgets keep the file to seconds.
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_MESSAGE_CHARS = 2000  # quoted input is cut short, so even a long message stays far below this


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


_counter = itertools.count()


def _file(folder: Path, content: str | bytes, suffix: str = ".yaml") -> Path:
    path = folder / f"f{next(_counter)}{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def survives(load) -> None:
    """``load()`` succeeds, or raises a CellsearchError whose message is one line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CellWarning)
            load()
    except CellsearchError as exc:
        msg = str(exc)
        assert msg.strip(), type(exc)
        assert "\n" not in msg and "\r" not in msg, repr(msg)
        assert len(msg) < MAX_MESSAGE_CHARS, msg


def all_loaders(folder: Path, text: str) -> None:
    survives(lambda: loads_cell(text, source="fuzz.yaml"))
    path = _file(folder, text)
    survives(lambda: load_cell(path))
    survives(lambda: load_space(path))


# ---------------------------------------------------------------------- the known attacks
LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def _cell(equation: str) -> str:
    return f"inputs: [x]\nstates: [h]\nnodes:\n  h: {equation}\n"


ATTACKS = [
    _cell("+".join(["x"] * 1500)),  # a flat sum deeper than Python's recursion limit
    _cell("-" * 1000 + "x"),  # nested unary minus
    _cell("-" * 4000 + "x"),  # too deep for ast.parse itself
    _cell("x+" * (5 << 20) + "x"),  # a 10 MB equation
    _cell("tanh(" + "9" * 400 + ")"),  # beyond float range as a node value
    _cell("linear(x, h_prev, bias_init=" + "9" * 400 + ")"),  # ... and as an attribute
    _cell("tanh(x) + 1" + "0" * 309),  # 1e309 written out
    _cell("tanh(0x" + "F" * 3000 + ")"),  # long hex
    _cell("tanh(x) + 1e999"),  # inf
    _cell("9" * 5000),  # beyond Python's int-from-string digit limit, as a YAML number
    _cell("{op: linear, inputs: [x], attrs: {bias_init: 0x" + "F" * 60 + "}}"),
    LAUGHS,  # billion laughs
    "kind: dag\ndescription:\n  " + LAUGHS.replace("\n", "\n  "),
    "a: &x [*x]\n",  # recursive alias
    "nodes: &n {h: *n}\nstates: [h]\n",
    "[" * 10_000 + "]" * 10_000,  # deep nesting
    "- " * 5000 + "x\n",
    "kind: dag\x00\n",  # a NUL byte
    _cell('"tanh(x)\\0"'),  # a NUL byte inside a string
    _cell("tanh(linear(x, ｈ_prev))"),  # fullwidth h: Python reads it as h
    "inputs: [x]\nstates: [ｈ]\nnodes:\n  ｈ: tanh(x)\n",
    "description: 2001-13-45\n" + _cell("tanh(x)"),  # a date that does not exist
    "kind: dag\nactivations: [\"tanh\\nrelu\"]\n",
    "kind: finite\ncells: ['" + "c/" * 3000 + ".yaml']\n",
    "kind: mutation\nseeds: [/dev/zero]\n",
]


# ---------------------------------------------------------------------- random bytes and text
@FUZZ
@given(st.binary(max_size=2000))
@example(b"\xff\xfe\x00\x00")
@example(b"kind: dag\n\x00")
@example(b"inputs: [x]\nstates: [h]\nnodes:\n  h: \xef\xbd\x88\n")
def test_random_bytes(folder, data):
    path = _file(folder, data)
    survives(lambda: load_cell(path))
    survives(lambda: load_space(path))


@FUZZ
@given(st.text(max_size=500))
def test_random_text(folder, text):
    all_loaders(folder, text)


@settings(max_examples=len(ATTACKS), deadline=None)
@given(st.sampled_from(ATTACKS))
def test_known_attacks(folder, text):
    all_loaders(folder, text)


YAML_TOKENS = [
    "a", "b", "h", "x", "nodes", "inputs", "states", "output", "static", "name", "kind", "dag", "tree",
    "finite", "mutation", "graph", "cells", "seeds", "activations", "tanh(x)", "linear(x, h_prev)",
    ":", ": ", " ", "\n", "\n  ", "\n    ", "- ", "[", "]", "{", "}", ", ", "'", '"', "\\", "|", ">", "#",
    "? ", "<<: ", "---", "...", "%YAML 1.1\n", "&a ", "*a", "&b ", "*b", "!!int ", "!!float ", "!!str ",
    "!!binary ", "!!set ", "!!omap ", "!!timestamp ", "!!python/object ", "!foo ", "~", "null", "true",
    "1", "-1", "0.5", "1e999", ".inf", ".nan", "0x" + "F" * 70, "9" * 80, "0b101", "0o17", "1:20:30",
    "2001-13-45", "2001-12-14t21:59:43.10-05:00", "ｈ", "é", "\u200b", "\t", "\x00", "\x85", "\ufeff",
]


@FUZZ
@given(st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map("".join))
def test_yaml_shaped_text(folder, text):
    all_loaders(folder, text)


# ---------------------------------------------------------------------- equations
NAME_TOKENS = ["x", "h", "h_prev", "c", "c_prev", "a", "_", "__x", "True", "true", "None", "lambda", "import",
               "__import__", "ｈ", "é", "x\u200b", "K"]
OP_TOKENS = ["+", "-", "*", "/", "**", "@", ".", ",", "=", "==", "<", ":", ";", "(", ")", "[", "]", "{", "}",
             "'", '"', "\\", "\n", "\t", " ", "\x00", "#", "`", "$", "...", " if ", " else ", " for ", " not ",
             " and ", "*args", "**kw"]
NUMBER_TOKENS = ["0", "1", "0.5", "1e999", "1e-999", "9" * 400, "0x" + "F" * 300, "1_000", "1j", "1e15",
                 "1e16", "nan", "inf", "0b101", "007", "00", "1."]
CALL_TOKENS = ["tanh(", "sigmoid(", "relu(", "identity(", "one_minus(", "neg(", "add(", "linear(", "blend(",
               "diag(", "leaky_relu(", "const(", "foo(", "bias_init=", "slope=", "bias=", "diag_init=", "init=",
               "value=", "bias=true", "bias=false"]


def _deep(n: int, kind: int) -> str:
    return ["-" * n + "x", "+".join(["x"] * n), "(" * n + "x" + ")" * n, "tanh(" * n + "x" + ")" * n][kind]


equations = st.one_of(
    st.lists(st.sampled_from(NAME_TOKENS + OP_TOKENS + NUMBER_TOKENS + CALL_TOKENS), max_size=40).map("".join),
    st.builds(_deep, st.integers(1, 3000), st.integers(0, 3)),
    st.text(max_size=60),
)


@FUZZ
@given(equations)
@example("x" + "+x" * 1500)
@example("-" * 1000 + "x")
@example("x+" * 3000 + "x")
@example("tanh(" + "9" * 400 + ")")
@example("linear(x, h_prev, bias_init=" + "9" * 400 + ")")
@example("0x" + "F" * 4000)
@example("tanh(x) + 1e999")
@example("tanh(linear(x, ｈ_prev))")
@example("ｈ")
@example("tanh(x)\x00")
def test_equations(folder, equation):
    data = {"inputs": ["x"], "states": ["h"], "nodes": {"h": equation}}
    survives(lambda: cell_from_dict(data, "fuzz.yaml"))
    text = yaml.safe_dump(data, allow_unicode=True)
    all_loaders(folder, text)


# ---------------------------------------------------------------------- random YAML structures
numbers = st.one_of(st.integers(-10, 10), st.integers(), st.integers(-(10 ** 1000), 10 ** 1000),
                    st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=30), equations)
keys = st.one_of(st.text(max_size=12), st.sampled_from(["name", "inputs", "static", "states", "output", "nodes",
                                                        "description", "op", "attrs", "kind"]))
structures = st.recursive(scalars, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(keys, kids, max_size=5),
                          max_leaves=30)
names = st.one_of(st.sampled_from(NAME_TOKENS), st.text(max_size=10))
node_mappings = st.fixed_dictionaries({}, optional={
    "op": st.one_of(st.sampled_from(list(OPS)), st.text(max_size=10)),
    "inputs": st.one_of(st.lists(names, max_size=4), structures),
    "attrs": st.one_of(st.dictionaries(st.one_of(st.sampled_from(["bias", "bias_init", "slope", "value", "init",
                                                                  "diag_init"]), st.text(max_size=8)),
                                       st.one_of(numbers, st.booleans(), structures), max_size=3), structures),
    "extra": structures,
})
cell_dicts = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.text(max_size=20), structures),
    "description": structures,
    "inputs": st.one_of(st.lists(names, max_size=3), structures),
    "static": st.one_of(st.lists(names, max_size=2), structures),
    "states": st.one_of(st.lists(names, min_size=1, max_size=3), names, structures),
    "output": st.one_of(names, structures),
    "nodes": st.one_of(st.dictionaries(names, st.one_of(equations, node_mappings, structures), max_size=6),
                       structures),
    "junk": structures,
})


@pytest.mark.slow
@FUZZ
@given(st.one_of(cell_dicts, structures))
@example({"inputs": ["x"], "states": ["h"], "nodes": {"h": {"op": "linear", "inputs": ["x"],
                                                            "attrs": {"bias_init": 10 ** 400}}}})
@example({"inputs": ["x"], "states": ["h"], "nodes": {"h": "tanh(x)"}, "name": 16 ** 5000})
@example({"inputs": ["ｘ"], "states": ["h"], "nodes": {"h": "tanh(ｘ)"}})
@example({"inputs": ["x"], "states": ["h"], "nodes": {"h": float("nan")}})
def test_random_cell_structures(folder, data):
    survives(lambda: cell_from_dict(data, "fuzz.yaml"))
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except ValueError:  # an int too long for str() (Python's digit limit): no YAML text of it
        return
    all_loaders(folder, text)


CELL_REFS = ["lstm", "gru", "nas", "tanh", "nope", "lstmm", "x.yaml", "../x.yaml", "/dev/zero", "/",
             "a" * 300 + ".yaml", "c/" * 3000 + ".yaml", "a\x00.yaml", "ｌｓｔｍ"]
ints = st.one_of(st.integers(-2, 70), st.integers(), st.sampled_from([2 ** 70, 10 ** 400, -(10 ** 400)]))
space_dicts = st.fixed_dictionaries({}, optional={
    "kind": st.one_of(st.sampled_from(KINDS), st.text(max_size=10), structures),
    "name": st.one_of(st.text(max_size=20), structures),
    "description": structures,
    "leaves": ints, "nodes": ints, "max_nodes": ints, "min_nodes": ints, "decision_steps": ints,
    "choices": ints, "max_linear_inputs": ints, "min_states": ints, "max_states": ints,
    "memory": st.one_of(st.booleans(), structures), "bias": st.one_of(st.booleans(), structures),
    "combinations": st.lists(st.one_of(st.sampled_from(["add", "mul", "sub"]), st.text(max_size=8)), max_size=4),
    "activations": st.lists(st.one_of(st.sampled_from([*ACTIVATIONS, "linear0.9", "linear" + "9" * 400,
                                                       "linear-1", "tanhh"]), st.text(max_size=8)), max_size=5),
    "elementwise_ops": st.lists(st.one_of(st.sampled_from(["add", "sub", "mul", "div"]), st.text(max_size=5)),
                                max_size=4),
    "transformations": st.lists(st.one_of(st.sampled_from(["swap_op", "remove_node", "insert_activation"]),
                                          st.text(max_size=8)), max_size=3),
    "rate": st.one_of(st.sampled_from(["uniform", "one_to_three"]), st.text(max_size=8)),
    "ops": st.lists(st.one_of(st.sampled_from(list(OPS)), st.text(max_size=8)), max_size=6),
    "seeds": st.lists(st.sampled_from(CELL_REFS), max_size=3),
    "cells": st.lists(st.sampled_from(CELL_REFS), max_size=3),
    "junk": structures,
})


@FEW
@given(st.one_of(space_dicts, structures))
@example({"kind": "dag", "activations": ["x\n" * 5000]})
@example({"kind": "k" * 10_000})
@example({"kind": "finite", "cells": ["c/" * 3000 + ".yaml"]})
@example({"kind": "tree", "leaves": 10 ** 400})
def test_random_space_structures(folder, data):
    survives(lambda: load_space(data))
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except ValueError:
        return
    path = _file(folder, text)
    survives(lambda: load_space(path))

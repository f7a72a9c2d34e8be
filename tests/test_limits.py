"""Hostile cell and space files: every input has a limit, and breaking one is a one-line
CellError/ConfigError naming the limit (library) and one line on stderr with exit 2 (CLI),
without blowing up: huge or deeply nested equations, numbers beyond float range, YAML alias
bombs and deep nesting, forbidden characters, look-alike Unicode names, oversized files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cellsearch import limits
from cellsearch.cli.train import parse_options
from cellsearch.dsl.io import cell_from_dict, load_cell, loads_cell
from cellsearch.errors import CellError, CellsearchError, ConfigError
from cellsearch.spaces.registry import load_space
from tests.support.hostile import refused, tree_digest
from tests.support.paths import REPO

# A hang guard, not a speed test: each refusal takes milliseconds; an input that got past its limit
# (an alias bomb, a 10 MB equation) would take minutes or exhaust memory instead.
pytestmark = pytest.mark.timeout(120)


def cell_text(equation: str, *, head: str = "inputs: [x]\nstates: [h]\n") -> str:
    return f"{head}nodes:\n  h: {equation}\n"


def refuse(load, *fragments: str, error: type[Exception] = CellsearchError) -> str:
    """Call ``load()``; check it raises ``error`` with a one-line message holding ``fragments``."""
    with pytest.raises(error) as info:
        load()
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert len(msg) < 600, msg  # quoted input is cut short
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def refuse_cell(text: str, *fragments: str, tmp_path: Path) -> None:
    """The cell text is refused by loads_cell, by load_cell on a file and by `cellsearch cells info`."""
    refuse(lambda: loads_cell(text, source="bad.yaml"), "bad.yaml", *fragments, error=CellError)
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    refuse(lambda: load_cell(path), str(path), *fragments, error=CellError)
    refused("cells", "info", str(path), says=fragments)
    refused("cells", "check", str(path), says=fragments)


def refuse_space(text: str, *fragments: str, tmp_path: Path) -> None:
    """The space text is refused by load_space on a file and by `cellsearch search`, which
    leaves the runs directory as it was."""
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    refuse(lambda: load_space(path), str(path), *fragments, error=ConfigError)
    runs = tmp_path / "runs"
    before = tree_digest(runs)
    refused("search", "--space", str(path), "--backend", "local", "--trials", "1", "--runs", str(runs),
            "--no-progress", says=fragments)
    assert tree_digest(runs) == before


# ---------------------------------------------------------------------- equations
def test_flat_sum_of_many_terms(tmp_path):
    refuse_cell(cell_text("+".join(["x"] * 1500)), "limit 'expression depth'", "node 'h'", tmp_path=tmp_path)


def test_many_nested_unary_minus_signs(tmp_path):
    refuse_cell(cell_text("-" * 1000 + "x"), "limit 'expression depth'", tmp_path=tmp_path)


def test_deep_brackets(tmp_path):
    refuse_cell(cell_text("tanh(" * 150 + "x" + ")" * 150), "limit 'expression depth'", tmp_path=tmp_path)


def test_unary_chain_too_deep_for_pythons_parser_is_named_as_our_limit():
    # 4000 minus signs fit the equation length, but ast.parse gives up (RecursionError) first
    refuse(lambda: loads_cell(cell_text("-" * 4000 + "x")), "limit 'expression depth'", error=CellError)


def test_long_equation(tmp_path):
    eq = "+".join(["tanh(x)"] * 700)  # shallow, but longer than the limit
    assert len(eq) > limits.MAX_EQUATION_CHARS
    refuse_cell(cell_text(eq), "limit 'equation length'", "node 'h'", tmp_path=tmp_path)


def test_ten_megabyte_equation_in_a_mapping():
    data = {"inputs": ["x"], "states": ["h"], "nodes": {"h": "x+" * (5 << 20) + "x"}}
    refuse(lambda: cell_from_dict(data, "bad.yaml"), "node 'h'", "equation length 10485761",
           "limit 'equation length' (4096 characters)", error=CellError)


def test_ten_megabyte_equation_in_a_file_is_refused_by_the_file_size(tmp_path):
    refuse_cell(cell_text("x+" * (5 << 20) + "x"), "limit 'cell file size'", tmp_path=tmp_path)


def test_long_name_in_an_equation(tmp_path):
    refuse_cell(cell_text("tanh(" + "a" * 300 + ")"), "limit 'name length'", tmp_path=tmp_path)


@pytest.mark.parametrize("equation, fragment", [("1if x else x", "if/else"), ("x is 1", "comparison"),
                                                ("x + '\\d'", "is not allowed")])
def test_equations_python_warns_about_stay_one_line(equation, fragment, tmp_path):
    # ast.parse warns (SyntaxWarning, DeprecationWarning): no second line on stderr
    refuse_cell(cell_text(equation), fragment, tmp_path=tmp_path)


# ---------------------------------------------------------------------- numbers
@pytest.mark.parametrize("equation", [
    "tanh(" + "9" * 400 + ")",  # a node value beyond float range
    "linear(x, h_prev, bias_init=" + "9" * 400 + ")",  # an attribute beyond float range
    "tanh(x) + 1" + "0" * 309,  # 1e309 written out
    "tanh(x) * 0x" + "F" * 300,  # long hex
    "tanh(x) - 1e999",  # inf
    "tanh(x) + 1e16",  # finite, but beyond the range
    "linear(x, h_prev, bias_init=-" + "9" * 30 + ")",
    "9" * 30,  # the node is the constant itself
])
def test_numbers_beyond_the_literal_range(equation, tmp_path):
    refuse_cell(cell_text(equation), "limit 'literal range'", "node 'h'", tmp_path=tmp_path)


@pytest.mark.parametrize("value", ["1.0e+400", "-.inf", ".nan", "99999999999999999999", "0x" + "F" * 40])
def test_yaml_numbers_beyond_the_literal_range(value, tmp_path):
    # as the whole equation (a YAML number) and as a graph-form attribute
    refuse_cell(cell_text(value), "limit 'literal range'", tmp_path=tmp_path)
    graph_form = cell_text("{op: linear, inputs: [x, h_prev], attrs: {bias_init: %s}}" % value)
    refuse_cell(graph_form, "limit 'literal range'", "'bias_init'", tmp_path=tmp_path)


def test_yaml_integer_beyond_pythons_digit_limit(tmp_path):
    # int("9" * 5000) raises ValueError in Python 3.11; the YAML number length is checked first
    refuse_cell(cell_text("9" * 5000), "limit 'YAML number length'", tmp_path=tmp_path)
    refuse_cell(cell_text("{op: linear, inputs: [x], attrs: {bias_init: %s}}" % ("9" * 5000)),
                "limit 'YAML number length'", tmp_path=tmp_path)
    refuse_cell("name: " + "9" * 5000 + "\n" + cell_text("tanh(x)"), "limit 'YAML number length'",
                tmp_path=tmp_path)


def test_integer_literal_beyond_pythons_digit_limit_in_a_long_equation(monkeypatch):
    # Unreachable with the equation-length limit; with it raised, ast.parse's own refusal is one line.
    monkeypatch.setattr(limits, "MAX_EQUATION_CHARS", 1 << 20)
    refuse(lambda: loads_cell(cell_text("tanh(" + "9" * 5000 + ")")), "node 'h'", error=CellError)


def test_integer_literal_at_the_limit_is_fine():
    g = loads_cell(cell_text("tanh(x) + 1000000000000000"), warn=False)
    assert any(n.op == "const" and n.attr("value") == 1e15 for n in g.nodes)


# ---------------------------------------------------------------------- YAML
LAUGHS = "\n".join([
    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    *(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")),
]) + "\n"


def test_billion_laughs_in_a_cell_file(tmp_path):
    assert len(LAUGHS) < 1024
    refuse_cell(LAUGHS, "limit 'YAML alias expansion'", tmp_path=tmp_path)
    # also where the cell reads the data (a description would be str()-ed in full)
    inner = LAUGHS.replace("\n", "\n  ")
    refuse_cell(f"description:\n  {inner}\n" + cell_text("tanh(x)"), "limit 'YAML alias expansion'",
                tmp_path=tmp_path)


def test_billion_laughs_in_a_space_file(tmp_path):
    text = "kind: dag\ndescription:\n  " + LAUGHS.replace("\n", "\n  ") + "\n"
    refuse_space(text, "limit 'YAML alias expansion'", tmp_path=tmp_path)


@pytest.mark.parametrize("text", ["inputs: &x [*x]\nstates: [h]\nnodes: {h: x}\n",
                                  "nodes: &n {h: *n}\nstates: [h]\n",
                                  "a: &x [1, [2, *x]]\n"])
def test_recursive_alias(text, tmp_path):
    refuse_cell(text, "recursive alias", "limit 'YAML alias expansion'", tmp_path=tmp_path)


def test_recursive_alias_in_a_space_file(tmp_path):
    refuse_space("kind: dag\nactivations: &a [tanh, *a]\n", "recursive alias", tmp_path=tmp_path)


def test_deep_yaml_nesting(tmp_path):
    refuse_cell("[" * 10_000 + "]" * 10_000, "limit 'YAML depth'", tmp_path=tmp_path)
    refuse_cell("- " * 5000 + "x\n", "limit 'YAML depth'", tmp_path=tmp_path)
    refuse_space("kind: dag\ndescription: " + "{a: " * 10_000 + "}" * 10_000 + "\n", "limit 'YAML depth'",
                 tmp_path=tmp_path)


def test_too_many_yaml_events(monkeypatch, tmp_path):
    monkeypatch.setattr(limits, "MAX_YAML_EVENTS", 1000)
    refuse_cell("description: [" + ", ".join(["x"] * 2000) + "]\n" + cell_text("tanh(x)"),
                "limit 'YAML events' (1000 events)", tmp_path=tmp_path)


def test_yaml_events_limit_fits_a_large_graph_form_cell():
    nodes = "".join(f"  n{i}: {{op: tanh, inputs: [n{i - 1}]}}\n" for i in range(1, 1000))
    text = "inputs: [x]\nstates: [h]\nnodes:\n  n0: {op: linear, inputs: [x, h_prev]}\n" + nodes \
        + "  h: {op: identity, inputs: [n999]}\n"
    g = loads_cell(text, warn=False)  # also a chain deeper than Python's recursion limit
    assert len(g.nodes) == 1001 and g.order[-1] == "h"


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\ufffe"])
def test_forbidden_yaml_character(char, tmp_path):
    refuse_cell(f"inputs: [x]{char}\nstates: [h]\nnodes: {{h: x}}\n", "not allowed in YAML", tmp_path=tmp_path)
    refuse_space(f"kind: dag{char}\n", "not allowed in YAML", tmp_path=tmp_path)


def test_control_character_in_an_equation(tmp_path):
    # YAML's escapes can put any character into a string
    refuse_cell(cell_text('"tanh(x)\\0"'), "control character", tmp_path=tmp_path)
    refuse_cell(cell_text('"tanh(x)\\e[31m"'), "control character", tmp_path=tmp_path)


@pytest.mark.parametrize("text, fragment", [
    ("description: 2001-13-45\n", "bad.yaml:1:14: YAML syntax error: invalid timestamp value '2001-13-45'"),
    ("description: !!int ''\n", "invalid int value ''"),
    ("description: !!bool maybe\n", "invalid bool value 'maybe'"),
    ("description: !!timestamp never\n", "invalid timestamp value 'never'"),
    ("description: !!float ''\n", "invalid float value"),
])
def test_values_pyyaml_cannot_build(text, fragment, tmp_path):
    refuse_cell(text + cell_text("tanh(x)"), fragment, tmp_path=tmp_path)


# ---------------------------------------------------------------------- names
def test_fullwidth_letter_in_an_equation(tmp_path):
    # Python reads 'ｈ' as 'h' (NFKC): without the check this loads, or reports a cycle
    refuse_cell(cell_text("tanh(linear(x, ｈ_prev))"), "non-ASCII character 'ｈ' (U+FF48) at column 16",
                "names are ASCII letters, digits and _", "(Python would read it as 'h')", tmp_path=tmp_path)
    refuse_cell(cell_text("ｈ"), "non-ASCII character 'ｈ' (U+FF48) at column 1", tmp_path=tmp_path)


def test_invisible_character_in_an_equation(tmp_path):
    refuse_cell(cell_text("tanh(x\u200b)"), "non-ASCII character '\\u200b' (U+200B)", tmp_path=tmp_path)


@pytest.mark.parametrize("head, fragment", [
    ("inputs: [ｘ]\nstates: [h]\n", "input name 'ｘ'"),
    ("inputs: [x]\nstatic: [ｃ]\nstates: [h]\n", "static input name 'ｃ'"),
    ("inputs: [x]\nstates: [h, ｈ]\noutput: h\n", "state name 'ｈ'"),
    ("inputs: [x]\nstates: [h]\noutput: ｈ\n", "output name 'ｈ'"),
])
def test_non_ascii_names_in_the_fields(head, fragment, tmp_path):
    refuse_cell(cell_text("tanh(linear(x, h_prev))", head=head), fragment, "non-ASCII character",
                tmp_path=tmp_path)


def test_non_ascii_node_names(tmp_path):
    refuse_cell("inputs: [x]\nstates: [h]\nnodes:\n  ｈ: tanh(x)\n  h: tanh(x)\n", "node name 'ｈ'",
                "(Python would read it as 'h')", tmp_path=tmp_path)
    refuse_cell(cell_text("{op: tanh, inputs: [ｘ]}"), "argument name 'ｘ'", "non-ASCII", tmp_path=tmp_path)


@pytest.mark.parametrize("head", ["inputs: ['" + "x" * 300 + "']\nstates: [h]\n",
                                  "inputs: [x]\nstates: ['" + "h" * 300 + "']\n"])
def test_long_names_in_the_fields(head, tmp_path):
    refuse_cell(cell_text("tanh(x)", head=head), "limit 'name length' (128 characters)", tmp_path=tmp_path)


def test_names_with_line_breaks_stay_on_one_line(tmp_path):
    refuse_cell('inputs: ["x\\ny"]\nstates: [h]\nnodes: {h: x}\n', "not a valid identifier", tmp_path=tmp_path)
    refuse_cell('inputs: [x]\nstates: [h]\nnodes: {"a\\nb": x, h: x}\n', "not a valid identifier",
                tmp_path=tmp_path)
    refuse_cell(cell_text("{op: tanh, inputs: [\"a\\nb\"]}"), "not a valid identifier", tmp_path=tmp_path)


# ---------------------------------------------------------------------- sizes of cells and files
def test_too_many_nodes(tmp_path):
    n = limits.MAX_NODES_PER_CELL + 1
    text = "inputs: [x]\nstates: [h]\nnodes:\n" + "".join(f"  a{i}: x\n" for i in range(n)) + "  h: x\n"
    refuse_cell(text, "limit 'nodes per cell' (4096 nodes)", tmp_path=tmp_path)


def test_too_many_nodes_from_sub_expressions(monkeypatch):
    monkeypatch.setattr(limits, "MAX_NODES_PER_CELL", 50)
    refuse(lambda: loads_cell(cell_text("+".join(["tanh(x)"] * 30))), "limit 'nodes per cell'", "node 'h'",
           error=CellError)


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:  # a hole: the file claims `size` bytes without using the disk
        f.truncate(size)
    return path


def test_oversized_cell_file_is_refused_before_reading(tmp_path):
    path = _sparse(tmp_path / "huge.yaml", 8 << 30)  # reading it whole would take minutes and 8 GB
    refuse(lambda: load_cell(path), "limit 'cell file size'", str(8 << 30), error=CellError)
    refused("cells", "info", str(path), says="limit 'cell file size'")


def test_oversized_space_file_is_refused_before_reading(tmp_path):
    path = _sparse(tmp_path / "huge.yaml", 8 << 30)
    refuse(lambda: load_space(path), "limit 'space file size'", error=ConfigError)
    runs = tmp_path / "runs"
    refused("search", "--space", str(path), "--backend", "local", "--trials", "1", "--runs", str(runs),
            "--no-progress", says="limit 'space file size'")
    assert tree_digest(runs) == {}


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_file_is_refused_before_reading():
    # its size says 0, and it never ends: a device is not a regular file, refused before it is opened
    refuse(lambda: load_cell("/dev/zero"), "/dev/zero", "not a regular file", error=CellError)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_a_file_larger_than_its_size_is_read_only_up_to_the_limit(monkeypatch):
    # a /proc file is a regular file whose size says 0: the read stops one byte past the limit
    monkeypatch.setattr(limits, "MAX_CELL_FILE_BYTES", 100)
    refuse(lambda: load_cell("/proc/self/status"), "limit 'cell file size'", "over 100 bytes", error=CellError)


def test_cell_text_longer_than_a_cell_file():
    text = cell_text("tanh(x)") + "#" * limits.MAX_CELL_FILE_BYTES
    refuse(lambda: loads_cell(text), "limit 'cell file size'", error=CellError)


def test_oversized_recipe_file_is_refused_before_reading(tmp_path):
    from cellsearch.dsl.nasbench import load_recipes

    path = _sparse(tmp_path / "r.json", 8 << 30)
    refuse(lambda: load_recipes(path), "limit 'recipe file size'", error=CellError)


def test_deeply_nested_recipe_json(tmp_path):
    from cellsearch.dsl.nasbench import load_recipes

    path = tmp_path / "r.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    refuse(lambda: load_recipes(path), "nested deeper", error=CellError)


# ---------------------------------------------------------------------- messages quote input short
def test_huge_values_are_quoted_short():
    big = "[" + ", ".join(["123456789"] * 5000) + "]"
    refuse(lambda: loads_cell("name: " + big + "\n" + cell_text("tanh(x)")), "field 'name' must be a string",
           error=CellError)
    refuse(lambda: loads_cell("inputs: " + big + "\nstates: [h]\nnodes: {h: x}\n"), "list of names",
           error=CellError)
    refuse(lambda: loads_cell(cell_text("{op: tanh, inputs: [x], attrs: {slope: '%s'}}" % ("s" * 5000))),
           "must be a number or true/false", error=CellError)
    refuse(lambda: loads_cell(cell_text("undefined_" + "z" * 100)), "undefined name", error=CellError)
    refuse(lambda: loads_cell(cell_text("{op: '%s', inputs: [x]}" % ("o" * 5000))), "unknown op",
           error=CellError)
    refuse(lambda: loads_cell(cell_text("tanh(x) + '%s'" % ("s" * 3000))), "is not allowed", error=CellError)


def test_space_schema_errors_are_one_short_line(tmp_path):
    for text, fragment in [
        ('kind: dag\nactivations: ["tanh\\nrelu"]\n', "unknown activation"),
        ("kind: '%s'\n" % ("k" * 5000), "unknown kind"),
        ('kind: dag\n"a\\nb": 1\n', "unknown field"),
        ("kind: dag\nnodes: '%s'\n" % ("n" * 5000), "field 'nodes'"),
        ("kind: finite\ncells: ['%s.yaml']\n" % ("c/" * 3000), "cannot load cell"),
        ("kind: finite\ncells: [\"a\\0.yaml\"]\n", "cannot load cell"),
        ("kind: mutation\nseeds: [lstm, lstm]\n", "listed twice"),
    ]:
        path = tmp_path / "space.yaml"
        path.write_text(text, encoding="utf-8")
        refuse(lambda: load_space(path), fragment, error=ConfigError)
    refuse(lambda: load_space({"kind": "dag", "activations": ["x\n" * 5000]}), "unknown activation",
           error=ConfigError)
    refuse(lambda: load_space("s" * 10_000), "unknown search space", error=ConfigError)


# ---------------------------------------------------------------------- KEY=VALUE options
def test_options_are_parsed_with_the_limits():
    assert parse_options(["a=1", "b=x", "c=[1, 2]", "d=", "e=true"]) == \
        {"a": 1, "b": "x", "c": [1, 2], "d": None, "e": True}
    for value, fragment in [("[" * 10_000, "limit 'YAML depth'"), ("&x [*x]", "recursive alias"),
                            (LAUGHS.replace("\n", ", ").join("{}"), "limit 'YAML alias expansion'"),
                            ("9" * 5000, "limit 'YAML number length'"), ("[", "YAML syntax error"),
                            ("a\x00", "not allowed in YAML")]:
        refuse(lambda: parse_options(["key=" + value]), "option 'key'", fragment, error=ConfigError)


def test_bad_option_through_the_cli(tmp_path):
    out = tmp_path / "out"
    refused("train", "gru", "--task-option", "max_digits=" + "[" * 10_000, "--out", str(out), "--no-progress",
            says="limit 'YAML depth'")
    assert not out.exists()


# ---------------------------------------------------------------------- what ships stays within the limits
def test_builtin_cells_and_shipped_spaces_fit_the_limits():
    from cellsearch.library import list_cells
    from cellsearch.spaces.registry import SPACE_NAMES

    root = REPO
    for path in sorted((root / "cellsearch" / "library").glob("*.yaml")):
        assert path.stat().st_size < limits.MAX_CELL_FILE_BYTES
        load_cell(path, warn=False)
    assert len(list_cells()) >= 20
    for path in sorted((root / "search_spaces").glob("*.yaml")):
        assert path.stat().st_size < limits.MAX_SPACE_FILE_BYTES
        load_space(path)
    for name in SPACE_NAMES:
        load_space(name)


def test_written_cells_stay_within_the_limits():
    """A search can grow a long chain of single-reader sub-expressions; printed inline it would
    be deeper than the reader accepts, so the printer splits it and the cell reads back."""
    from cellsearch.dsl.graph import CellGraph, Node
    from cellsearch.dsl.hashing import canonical_hash
    from cellsearch.dsl.io import dumps_cell

    nodes = [Node.make("a0", "linear", ["x", "h_prev"], auto=True)]
    nodes += [Node.make(f"a{i}", "tanh", [f"a{i - 1}"], auto=True) for i in range(1, 1500)]
    nodes.append(Node.make("h", "identity", ["a1499"]))
    graph = CellGraph(name="chain", inputs=("x",), states=("h",), output="h", nodes=tuple(nodes))
    graph.validate(warn=False)  # the order is found without recursion
    for form in ("equations", "graph"):
        back = loads_cell(dumps_cell(graph, form), warn=False)
        assert canonical_hash(back) == canonical_hash(graph)


def test_every_limit_named_in_the_code_has_a_row_in_the_guide():
    """The guide's limits table (docs/data-safety.md) is the user's list of limits: every limit name
    the package passes to the limit checks (``check_limit``, ``LimitError``, ``exceeds``,
    ``check_number``, the bounded readers) must have a row there."""
    import ast
    import re

    root = REPO
    position = {"check_limit": 1, "LimitError": 1, "FileTooLargeError": 1, "exceeds": 2, "check_number": 3,
                "opened_regular": 1, "check_regular": 1, "read_regular": 1}
    named: dict[str, str] = {}
    for path in (root / "cellsearch").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if func not in position:
                continue
            args = [*node.args] + [kw.value for kw in node.keywords if kw.arg == "limit"]
            i = position[func] if len(node.args) > position[func] else len(node.args)
            if i < len(args) and isinstance(args[i], ast.Constant) and isinstance(args[i].value, str):
                named.setdefault(args[i].value, f"{path.relative_to(root)}:{node.lineno}")
    assert len(named) > 30, named  # the scan finds the limits (it must not pass by finding none)
    page = (root / "docs" / "data-safety.md").read_text(encoding="utf-8")
    table = page.split("## Limits", 1)[1].split("\n## ", 1)[0]  # the limits section's table only
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    in_table = set(re.findall(r"`([^`]+)`", "\n".join(row.split(" | ")[0] for row in rows)))
    missing = {name: where for name, where in named.items() if name not in in_table}
    assert not missing, f"limits without a row in the limits table of docs/data-safety.md: {missing}"

"""Hostile text against every code generator: a cell file must never run code through export.

Probes of the hostile-inputs issue, second round, critical finding 1: a cell's ``name`` (and any
other text of a cell file that reaches generated source: description, source, node and state
names, the model card) written unescaped into a generated module ran code during
``cellsearch export`` and at every later import of the exported file. The cell name is now held
to a file-name-safe pattern, and every other text reaches generated source only through
``cellsearch.dsl.literals``. The property tests feed random and crafted text into every such
field and check, for each generator (the compiled step and backward of ``cells code``, the
Triton kernels, the exported Python module behind the py/TorchScript/ONNX formats, the YAML
export's header, the model card), that the source parses, that the text changed nothing but
string constants, and that loading the module runs nothing.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cellsearch.compile.codegen import CellProgram
from cellsearch.compile.fused import generate_fused
from cellsearch.dsl import literals
from cellsearch.dsl.graph import CELL_NAME_RULE, cell_name_from, check_cell_name
from cellsearch.dsl.io import loads_cell
from cellsearch.errors import CellError
from cellsearch.export.pysource import python_source
from cellsearch.library import resolve_cell
from tests.support.hostile import cli, refused, unchanged

pytestmark = pytest.mark.timeout(120)

SENTINEL = "CELLSEARCH_PWNED"


def payloads(marker: Path) -> list[str]:
    """Text that would run ``touch marker`` if it reached generated source unescaped, in every
    quoting context a generator uses (docstrings, strings in either quote, comments)."""
    run = f"__import__('os').system('touch {marker}')"
    return [f'X")\n{run}\n#', f"X')\n{run}\n#", f'"""\n{run}\n"""', f"'''\n{run}\n'''",
            f"\\\n{run}", f"x\r{run}", f"x\u2028{run}", f"x\x0c{run}", f"x\\\"\"\"\n{run}\n#",
            f"{{{run}}}", f"x\x00{run}"]


# ---------------------------------------------------------------------- the audit hook
class _Watch:
    """An audit hook that records attempts to run a process or touch the sentinel while armed
    (hooks cannot be removed, so one is installed per process and switched on and off)."""

    events: list[tuple[str, str]] = []
    armed = False
    installed = False

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if not cls.armed:
            return
        if event in ("os.system", "subprocess.Popen", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                     "os.startfile", "pty.spawn") or (event == "open" and SENTINEL in str(args[:1])):
            cls.events.append((event, str(args)[:200]))

    @classmethod
    def running(cls):
        if not cls.installed:
            sys.addaudithook(cls.hook)
            cls.installed = True
        return cls


def load_without_running_anything(source: str) -> dict:
    """Execute generated module ``source`` and return its namespace; fail if it tried to run a
    process or open the sentinel on the way."""
    watch = _Watch.running()
    watch.events.clear()
    watch.armed = True
    try:
        namespace: dict = {"__name__": "cellsearch_hostile_probe"}
        exec(compile(source, "<hostile probe>", "exec"), namespace)  # the module under test: source we generated
    finally:
        watch.armed = False
    assert not watch.events, watch.events
    return namespace


def code_shape(source: str) -> str:
    """The module's syntax tree with every string constant blanked: two sources with the same
    shape differ at most in the values of string literals, i.e. in no code at all."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


def every_source(graph, card: str = "") -> dict[str, str]:
    """The source of every generator for ``graph`` at small sizes."""
    program = CellProgram(graph, 4, 4)
    fused, _ = generate_fused(program)
    return {"compiled": program.source, "triton": fused.source,
            "export": python_source(graph, 4, 4, card=card, weights_file=f"{graph.name}.pt")}


# ---------------------------------------------------------------------- the rule for cell names
def test_the_cell_name_rule():
    """Probe: a cell name is free text. Now: ASCII letters, digits, _ - ., not starting with . or -."""
    for ok in ("lstm", "lstm-b", "mut1", "nas_rl", "cell.v2", "_x", "0abc"):
        check_cell_name(ok)
    for bad in ('X")', "a b", "../etc", ".hidden", "-rf", "a/b", "a\nb", "ｈ", "", "a'b", "x" * 129):
        with pytest.raises(CellError):
            check_cell_name(bad)
    assert cell_name_from("my cell (1)") == "my_cell__1_"
    assert cell_name_from(".hidden") == "_.hidden"
    assert cell_name_from("") == "cell"
    check_cell_name(cell_name_from("ü" * 300))


@given(st.text(max_size=200))
def test_a_name_made_from_any_file_name_is_valid(text):
    """Probe: a cell file without a name takes its file's stem, which may be anything."""
    check_cell_name(cell_name_from(text))


# ---------------------------------------------------------------------- the CLI probes
def _cell_file(tmp_path: Path, **fields: str) -> Path:
    text = yaml.safe_dump({"name": "probe", "states": ["h"], "nodes": {"h": "tanh(linear(x, h_prev))"}, **fields})
    path = tmp_path / "in" / "probe.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("fmt", ["py", "torchscript", "onnx", "yaml"])
def test_a_cell_name_that_would_run_code_is_refused_by_export(tmp_path, fmt):
    """Probe: `cellsearch export CELL --format py|torchscript|onnx` with a name like `X")` +
    newline + `import os; os.system(...)` ran the code (at export and at every import)."""
    marker = tmp_path / SENTINEL
    out = tmp_path / "out"
    for payload in payloads(marker)[:3]:
        cell = _cell_file(tmp_path, name=payload)
        with unchanged(tmp_path / "in"):
            refused("export", str(cell), "--format", fmt, "--output", str(out / f"probe.{fmt}"),
                    says=("cell name", "not allowed"))
        assert not marker.exists(), "the cell name ran code"
        assert not out.exists(), "a refused export wrote files"


def test_a_cell_name_that_would_run_code_is_refused_by_every_reader(tmp_path):
    """Probe: the same name through `cells check`, `cells code`, `cells info`, `train`."""
    marker = tmp_path / SENTINEL
    cell = _cell_file(tmp_path, name=payloads(marker)[0])
    line = refused("cells", "check", str(cell), says="not allowed")
    assert CELL_NAME_RULE in line
    refused("cells", "code", str(cell), says="not allowed")
    refused("cells", "info", str(cell), says="not allowed")
    refused("train", str(cell), "--steps", "1", "--out", str(tmp_path / "t"), "--no-progress", says="not allowed")
    assert not marker.exists() and not (tmp_path / "t").exists()


def test_a_space_whose_name_would_run_code_is_refused(tmp_path):
    """Probe: a space's name is the name of every cell it makes."""
    marker = tmp_path / SENTINEL
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"kind": "mutation", "name": payloads(marker)[0]}))
    refused("spaces", "check", str(space), says="not allowed")
    refused("search", "--space", str(space), "--runs", str(tmp_path / "runs"), "--backend", "local",
            "--no-progress", says="not allowed")
    assert not (tmp_path / "runs").exists() and not marker.exists()


@pytest.mark.parametrize("field", ["description", "source"])
@pytest.mark.parametrize("fmt", ["py", "torchscript"])
def test_hostile_prose_is_exported_as_text_and_runs_nothing(tmp_path, field, fmt):
    """Probe: descriptions and sources are prose that reaches the module's docstrings and the
    model card: export keeps the text, and neither export nor importing the module runs it."""
    marker = tmp_path / SENTINEL
    text = "\n".join(p.replace("\x00", "") for p in payloads(marker))  # YAML refuses NUL
    cell = _cell_file(tmp_path, **{field: text})
    out = tmp_path / "out" / ("probe.py" if fmt == "py" else "probe.pt")
    res = cli("export", str(cell), "--format", fmt, "--output", str(out), "--hidden-size", "4", "--input-size", "4")
    assert res.exit_code == 0, res.stderr
    assert not marker.exists(), "export ran the cell's text"
    assert f"touch {marker}" in Path(str(out) + ".card.md").read_text()
    if fmt == "py":
        source = out.read_text()
        namespace = load_without_running_anything(source)
        assert f"touch {marker}" in namespace["__doc__"]  # kept as text
        load_without_running_anything(source)  # a second import as well
    assert not marker.exists()


def test_the_yaml_export_header_cannot_inject_yaml(tmp_path):
    """Probe: the YAML export writes the cell's name and the output file's name into comments
    above the cell; a line break there would add YAML of the attacker's choosing."""
    g = dataclasses.replace(resolve_cell("lstm"), name="lstm", description="a\nnodes: {}\n# b")
    out = tmp_path / "out" / "weird\nname: evil.yaml"
    res = cli("export", str(_write(g, tmp_path)), "--format", "yaml", "--output", str(out), "--hidden-size", "4")
    assert res.exit_code == 0, res.stderr
    again = loads_cell(out.read_text())
    assert again.name == "lstm" and again.description == g.description and again.nodes == g.nodes


def _write(g, tmp_path: Path) -> Path:
    from cellsearch.dsl.io import save_cell

    return save_cell(g, tmp_path / "in" / "cell.yaml")


# ---------------------------------------------------------------------- the library route
def test_a_graph_built_in_python_with_a_hostile_name_is_refused_by_every_generator(tmp_path):
    """Probe: the Python API builds a CellGraph without a file; the compiler and the exporter
    validate it, name included."""
    from cellsearch.export import export_cell

    marker = tmp_path / SENTINEL
    g = dataclasses.replace(resolve_cell("lstm"), name=payloads(marker)[0])
    with pytest.raises(CellError, match="not allowed"):
        CellProgram(g, 4, 4)
    with pytest.raises(CellError, match="not allowed"):
        python_source(g, 4, 4)
    with pytest.raises(CellError, match="not allowed"):
        export_cell(g, "py", tmp_path / "o.py")
    too_long = dataclasses.replace(resolve_cell("lstm"), description="x" * 5000)
    with pytest.raises(CellError, match="cell text length"):
        CellProgram(too_long, 4, 4)
    assert not marker.exists()


# ---------------------------------------------------------------------- property tests
_TEMPLATE = """
name: {name}
inputs: [{x}]
states: [{h}, {c}]
output: {h}
nodes:
  {i}: sigmoid(linear({x}, {h}_prev))
  {f}: sigmoid(linear({x}, {h}_prev, bias_init=1.0))
  {c}: {f} * {c}_prev + {i} * tanh(linear({x}, {h}_prev))
  {h}: tanh({c}) * diag({c}_prev)
"""
_NEUTRAL = dict(name="probe", x="x", h="h", c="c", i="i", f="f")

hostile_text = st.one_of(st.text(max_size=300),
                         st.sampled_from(payloads(Path("/tmp") / SENTINEL)),
                         st.lists(st.sampled_from(['"', "'", '"""', "'''", "\\", "\n", "\r", "\x00", "\u2028",
                                                   "#", "{", "}", "%s", "\t", "import os", ")", "\x85"]),
                                  max_size=30).map("".join))
# identifiers, biased towards the names a generator itself uses
identifiers = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),
                        st.sampled_from(["torch", "F", "nn", "self", "exec", "eval", "print", "math", "Tensor",
                                         "Path", "tl", "triton", "aten", "H", "I", "S", "x_t", "outs", "state",
                                         "zeros", "launch", "step", "prologue", "load", "WEIGHTS", "CELL_NAME"]))
cell_names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}", fullmatch=True)
_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(name=cell_names, description=hostile_text, source=hostile_text)
def test_cell_text_changes_only_string_constants_in_every_generator(name, description, source):
    """Property: a cell's name, description and source (and the model card that quotes them)
    change nothing in any generated source but the values of string literals, and loading the
    exported module runs nothing."""
    # the name also names the exported class (an identifier made of its letters and digits):
    # compare with the same cell under the same name, without the text
    base = dataclasses.replace(loads_cell(_TEMPLATE.format(**_NEUTRAL)), name=name)
    g = dataclasses.replace(base, description=description, source=source)
    card = f"# {name}\n\n{description}\n\n- source: {source}\n"
    neutral, hostile = every_source(base, card=f"# {name}\n"), every_source(g, card=card)
    for kind in neutral:
        assert code_shape(hostile[kind]) == code_shape(neutral[kind]), kind
    namespace = load_without_running_anything(hostile["export"])
    assert namespace["CELL_NAME"] == name
    assert namespace["__doc__"].split() == card.split()  # the card, as text


@_SETTINGS
@given(names=st.fixed_dictionaries({k: identifiers for k in ("x", "h", "c", "i", "f")}), name=cell_names)
def test_any_valid_names_give_sources_that_parse_and_run_nothing(names, name):
    """Property: node, state and input names (identifiers, some shadowing what generated code
    uses) give sources that parse, and the exported module loads and computes without running
    anything else."""
    try:
        g = loads_cell(_TEMPLATE.format(name=name, **names))
    except CellError:
        assume(False)  # two names equal, a keyword, a reserved spelling: refused at load, fine
    sources = every_source(g)
    for source in sources.values():
        ast.parse(source)
    namespace = load_without_running_anything(sources["export"])
    layer_class = next(v for v in namespace.values()
                       if isinstance(v, type) and issubclass(v, torch.nn.Module) and v.__module__ == namespace["__name__"])
    layer = layer_class(4, 4)
    out, state = layer(torch.zeros(3, 2, 4))
    assert out.shape == (3, 2, 4) and len(state) == 2


@given(hostile_text, st.sampled_from(["", "    ", "\t"]))
def test_literals_are_one_string_with_the_text_as_value(text, indent):
    """Property: the literal helpers always give one string literal of the given text (a
    docstring keeps the text, indented) and a comment is one line."""
    assert ast.literal_eval(literals.string(text)) == text
    value = ast.literal_eval(literals.docstring(text, indent).strip())
    assert value.split() == text.split()  # the same text, but for indentation and blank lines
    comment = literals.comment(text)
    assert len(comment.splitlines()) == 1 and ast.parse(comment + "\npass").body[0].__class__ is ast.Pass


@pytest.mark.parametrize("value", ["[1, 2]", "{a: 1}"])
@pytest.mark.parametrize("field", ["description", "source"])
def test_a_description_or_source_that_is_not_text_is_refused(tmp_path, field, value):
    """Probe (review of this change): a list or mapping as a cell's description was turned into
    the text of its repr and accepted, where a recipe or a space refuses it."""
    path = tmp_path / "c.yaml"
    path.write_text(f"name: c\nstates: [h]\n{field}: {value}\nnodes:\n  h: tanh(linear(x, h_prev))\n")
    refused("cells", "check", str(path), says=(f"field '{field}' must be text", "c.yaml:3"))

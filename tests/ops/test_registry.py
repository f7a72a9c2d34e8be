"""The op registry: no backend names an op, and every registered op passes the differential tests.

* The interpreter, the compiler, the fused kernels and the export ask the op object
  (``cellsearch.ops``); a string literal of an op's name compared, tested for membership, used
  as a dict key or looked up in ``OPS`` inside ``cellsearch/compile`` or ``cellsearch/export``
  would be a rule about that op outside its module, so the source is scanned for them.
* For every op in ``OPS`` (so an op added tomorrow is in the list without editing this file),
  random cells that use it go through the differential checks: compiled (generated backward
  and autograd) vs the reference interpreter, the fused Triton kernels (under Triton's CPU
  interpreter) vs the interpreter where the op has Triton rules, the exported Python module vs
  the compiled cell, and a member of a batched population vs the same cell alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import cellsearch
from cellsearch.compile.fused import triton_available
from cellsearch.compile.population import population_forward
from cellsearch.compile.cell import CompiledCell
from cellsearch.export.pysource import imported, instance, python_source
from cellsearch.export.verify import run_module
from cellsearch.ops.registry import OPS

from tests.support.differential import assert_same, random_states
from tests.support.generators import cells

PACKAGE = Path(cellsearch.__file__).parent
SCANNED = ("compile", "export")
# A literal that is an op's name but means something else there (path, literal): why
ALLOWED = {
    ("compile/matmuls.py", "linear"): "the name of a matmul helper of the generated code",
}
EXAMPLES = settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))


# ---------------------------------------------------------------------- no op named outside the registry
def _op_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of every op-name string compared, tested with ``in``, used as a dict key or
    as a subscript (``OPS["x"]``) in ``tree``."""
    names = set(OPS)
    found: list[tuple[int, str]] = []

    def strings(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [s for e in node.elts for s in strings(e)]
        return []

    for node in ast.walk(tree):
        candidates: list[ast.AST] = []
        if isinstance(node, ast.Compare):
            candidates = [node.left, *node.comparators]
        elif isinstance(node, ast.Dict):
            candidates = [k for k in node.keys if k is not None]
        elif isinstance(node, ast.Subscript):
            candidates = [node.slice]
        elif isinstance(node, ast.match_case):
            candidates = [p.value for p in ast.walk(node.pattern) if isinstance(p, ast.MatchValue)]
        for c in candidates:
            found += [(node.lineno if hasattr(node, "lineno") else c.lineno, s) for s in strings(c) if s in names]
    return found


def test_no_backend_names_an_op():
    offenders = []
    for folder in SCANNED:
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            rel = str(path.relative_to(PACKAGE))
            for line, name in _op_literals(ast.parse(path.read_text(encoding="utf-8"))):
                if (rel, name) not in ALLOWED:
                    offenders.append(f"cellsearch/{rel}:{line}: '{name}'")
    assert not offenders, "ops named outside cellsearch/ops (ask the op object instead):\n" + "\n".join(offenders)


def test_the_scan_finds_an_op_name():
    """The scan above can fail: it sees the forms a rule about an op takes."""
    src = ('if node.op == "tanh": pass\nx = op in ("add", "mul")\nd = {"relu": 1}\ny = OPS["sigmoid"]\n'
           'match op:\n    case "neg": pass\n')
    assert sorted(n for _, n in _op_literals(ast.parse(src))) == ["add", "mul", "neg", "relu", "sigmoid", "tanh"]
    assert not _op_literals(ast.parse('torch.ops.aten.add(a, b)\nname = "tanh"\nf("mul")\n'))


# ---------------------------------------------------------------------- every op through the differential tests
def _cells_using(op: str, static: bool | None = None, fusable: bool = False):
    """Random cells in which ``op`` is live (memory cells for the ops over memories); ``fusable``: of
    the ops the fused kernels compute only."""
    spec = OPS[op]
    memory = spec.reads_given_memory
    memory_state = bool(spec.signature) and not memory
    ops = [name for name, o in OPS.items() if o.triton or o.is_matmul or o.is_literal] if fusable else None
    location = True if spec.signature and spec.signature[0][0] == "weights" and spec.result_kind() == "weights" \
        else None if memory_state else False  # (the location ops: weights to weights)
    strategy = cells(memory=memory, memory_state=memory_state, favour=op, max_nodes=8, static=static, ops=ops,
                     location=location)

    def uses(g) -> bool:
        return any(n.op == op and n.name in g.live for n in g.nodes)

    return strategy.filter(uses)


def _stable(graph, size: int) -> None:
    """Reject cells whose values blow up on a short sequence (exp(exp(...)), squares of squares)."""
    torch.manual_seed(0)
    cell = CompiledCell(graph, size, size, size if graph.static else None).double()
    x = torch.randn(3, 2, size, dtype=torch.float64)
    states = random_states(graph, 2, size)
    statics = tuple(torch.randn(2, size, dtype=torch.float64) for _ in graph.static)
    memory = tuple(torch.randn(2, 4, size, dtype=torch.float64) for _ in graph.memory)
    with torch.no_grad():
        out, fin = cell(x, states, statics, memory)
    assume(all(bool(t.isfinite().all()) and t.abs().max().item() < 1e4 for t in (out, *fin)))


@pytest.mark.parametrize("op", list(OPS))
def test_every_op_compiled_matches_interpreter(op):
    @EXAMPLES
    @given(graph=_cells_using(op), seed=st.integers(0, 3), mode=st.sampled_from(["fused", "autograd"]))
    def check(graph, seed, mode):
        _stable(graph, 4)
        assert_same(graph, 4, 4, T=3, B=2, static_size=4, seed=seed, mode=mode, stable_only=True)

    check()


@pytest.mark.skipif(not triton_available(), reason="Triton is not installed")
@pytest.mark.parametrize("op", [name for name, spec in OPS.items() if spec.triton])
def test_every_fusable_op_fused_matches_interpreter(op, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")

    @EXAMPLES
    @given(graph=_cells_using(op, fusable=True), seed=st.integers(0, 3))
    def check(graph, seed):
        _stable(graph, 4)
        assert_same(graph, 4, 4, T=2, B=2, static_size=4, seed=seed, stable_only=True, pointwise="fused")

    check()


def test_the_ops_without_triton_rules_are_the_memory_ops_and_mixed():
    """Fused kernels are pointwise: an op without Triton rules must be one the fused runtime
    never sees (it runs memory cells eagerly, and cells with such an op in the loop: mixed, whose
    α gradient is a reduction), or linear/const, which the kernels handle apart."""
    for name, spec in OPS.items():
        assert spec.triton or spec.signature or spec.is_matmul or spec.is_literal or name == "mixed", name


@pytest.mark.skipif(not triton_available(), reason="Triton is not installed")
@pytest.mark.parametrize("op", [name for name, spec in OPS.items()
                                if not (spec.triton or spec.signature or spec.is_matmul or spec.is_literal)])
def test_an_op_without_triton_rules_runs_eagerly(op, monkeypatch):
    """pointwise='fused' refuses a cell with such an op in its loop in one line; 'auto' runs it eagerly."""
    from cellsearch.compile.pointwise import runtime_program
    from cellsearch.errors import CellsearchError

    monkeypatch.setenv("TRITON_INTERPRET", "1")

    @EXAMPLES
    @given(graph=_cells_using(op))
    def check(graph):
        cell = CompiledCell(graph, 4, 4, 4 if graph.static else None)
        in_loop = any(graph.node_map[n].op == op for n in cell.program.schedule.loop_nodes)
        assume(in_loop)
        assert runtime_program(cell.program, torch.device("cpu")) is cell.program  # auto: eager on CPU
        cell.program.pointwise = "fused"
        with pytest.raises(CellsearchError, match=f"does not support .*{op}"):
            runtime_program(cell.program, torch.device("cpu"))

    check()


@pytest.mark.parametrize("op", list(OPS))
def test_every_op_exported_module_matches_compiled(op, tmp_path):
    @EXAMPLES
    @given(graph=_cells_using(op))
    def check(graph):
        _stable(graph, 4)
        torch.manual_seed(0)
        compiled = CompiledCell(graph, 4, 4, 4 if graph.static else None).double()
        path = tmp_path / "cell.py"
        path.write_text(python_source(graph, 4, 4, 4 if graph.static else None), encoding="utf-8")
        state = compiled.params.state_dict()
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(3, 2, 4, generator=gen, dtype=torch.float64)
        states = random_states(graph, 2, 4, generator=gen)
        statics = tuple(torch.randn(2, 4, generator=gen, dtype=torch.float64) for _ in graph.static)
        from cellsearch.compile.attention import Memory

        memory = tuple(Memory(torch.randn(2, 4, 4, generator=gen, dtype=torch.float64),
                              torch.tensor([[True] * 4, [True, True, True, False]])) for _ in graph.memory)
        with torch.no_grad():
            out, fin = compiled(x, states, statics, memory)
        with imported(path) as module:
            model = instance(graph, module, compiled.params, state).double()
            got = run_module(graph, model, x, states, statics, memory)
        for a, b in zip(got, [out, *fin]):
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)

    check()


@pytest.mark.parametrize("op", list(OPS))
def test_every_op_population_member_matches_solo(op):
    """K members of one cell in one batched loop (``population_forward``; memory-state cells run
    one by one there by design) against each member alone: outputs, states and gradients."""
    if OPS[op].reads_given_memory:
        pytest.skip("populations train cells without a given memory (population_forward takes none)")

    @EXAMPLES
    @given(graph=_cells_using(op, static=False))
    def check(graph):
        _stable(graph, 4)
        torch.manual_seed(0)
        members = [CompiledCell(graph, 4, 4, pointwise="eager").double() for _ in range(3)]
        xs = [torch.randn(3, 2, 4, dtype=torch.float64) for _ in members]
        states = [random_states(graph, 2, 4) for _ in members]
        together = population_forward(members, xs, states)
        params = [p for m in members for p in m.params.parameters()]
        loss = sum((out * out).sum() for out, _ in together)
        trained = bool(params) and loss.requires_grad  # (a cell may have no parameters, or none that reach h)
        grads = torch.autograd.grad(loss, params, allow_unused=True) if trained else ()
        alone = []
        for cell, x, state, (out, fin) in zip(members, xs, states, together):
            out_a, fin_a = cell(x, state)
            torch.testing.assert_close(out, out_a, atol=1e-10, rtol=1e-10)
            for a, b in zip(fin, fin_a):
                torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
            if trained:
                alone += torch.autograd.grad((out_a * out_a).sum(), list(cell.params.parameters()),
                                             allow_unused=True)
        for a, b in zip(grads, alone):
            if a is None or b is None:
                assert (a is None or not a.abs().any()) and (b is None or not b.abs().any())
            else:  # (a gradient may overflow on a growing cell, exp(exp(...)): then it must in both)
                torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9, equal_nan=True)

    check()

"""The stack ops (stack, top, below) and the stack-rnn cell: the update by hand, the helpers'
gradients against autograd (float64), the start (empty, in the layers and the exported module),
what the DSL refuses (one line each) and stack-rnn through the differential check."""

from __future__ import annotations

import pytest
import torch

from cellsearch.compile import CompiledCell, InterpretedCell
from cellsearch.compile import stack as helpers
from cellsearch.dsl.io import loads_cell
from cellsearch.errors import CellError
from cellsearch.export.pysource import imported, instance, python_source
from cellsearch.library import get_cell
from cellsearch.nn.layers import CellRNN
from cellsearch.ops.stack import BELOW, STACK, TOP
from tests.support.differential import assert_same

ORACLE = {"stack": STACK, "top": TOP, "below": BELOW}
BIG = 50.0  # an action score that makes the softmax one-hot (to double precision)


def _act(kind: str, b: int = 1, h: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    scores = {k: torch.full((b, h), BIG if k == kind else -BIG, dtype=torch.float64) for k in ("push", "pop", "noop")}
    return scores["push"], scores["pop"], scores["noop"]


def _rounded(t: torch.Tensor) -> list[float]:
    return [round(v, 12) for v in t.tolist()]


@pytest.mark.parametrize("impl", ["helper", "oracle"])
def test_hard_actions_push_pop_and_keep(impl):
    step = helpers.stack if impl == "helper" else (lambda *a: STACK.interpret(None, list(a), None, None))
    s = torch.zeros(1, 3, 2, dtype=torch.float64)
    for value in (1.0, 2.0, 3.0, 4.0):  # the fourth push drops the bottom (1)
        s = step(s, *_act("push"), torch.full((1, 2), value, dtype=torch.float64))
    assert _rounded(s[0, :, 0]) == [4.0, 3.0, 2.0]
    assert _rounded(helpers.top(s)[0]) == [4.0, 4.0] and _rounded(helpers.below(s)[0]) == [3.0, 3.0]
    s = step(s, *_act("noop"), torch.full((1, 2), 9.0, dtype=torch.float64))
    assert _rounded(s[0, :, 1]) == [4.0, 3.0, 2.0]
    s = step(s, *_act("pop"), torch.full((1, 2), 9.0, dtype=torch.float64))
    assert _rounded(s[0, :, 0]) == [3.0, 2.0, 0.0]  # an empty cell (0) enters at the bottom


def test_soft_actions_mix_the_three_results():
    s = torch.tensor([[[1.0], [2.0]]], dtype=torch.float64)
    zero = torch.zeros(1, 1, dtype=torch.float64)
    got = helpers.stack(s, zero, zero, zero, torch.full((1, 1), 3.0, dtype=torch.float64))
    # thirds of push [3, 1], pop [2, 0] and no-op [1, 2]
    torch.testing.assert_close(got[0, :, 0], torch.tensor([2.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_helpers_backward_match_autograd(rows):
    gen = torch.Generator().manual_seed(rows)
    s = torch.randn(3, rows, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    vecs = [torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    for name, args in (("stack", [s, *vecs]), ("top", [s]), ("below", [s])):
        out = getattr(helpers, name)(*args)
        d = torch.randn(out.shape, generator=gen, dtype=torch.float64)
        want = torch.autograd.grad(out, args, d, allow_unused=True) if out.requires_grad else (None,) * len(args)
        got = getattr(helpers, f"{name}_backward")(d, *[a.detach() for a in args])
        assert len(got) == len(args)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, torch.zeros_like(g) if w is None else w, atol=1e-12, rtol=1e-12)
        # and the oracle (the interpreter's rule) agrees with the helper's forward
        torch.testing.assert_close(out, ORACLE[name].interpret(None, list(args), None, None))


def test_stack_rnn_compiled_matches_interpreter_and_autograd():
    for mode in ("fused", "autograd"):
        assert_same(get_cell("stack-rnn"), 3, 4, T=6, B=2, mode=mode, tol=1e-9)


def test_a_stack_state_starts_empty_in_layers_and_in_the_exported_module(tmp_path):
    g = get_cell("stack-rnn")
    rnn = CellRNN(g, 3, 5, memory_rows=7)
    (s,) = [t for name, t in zip(g.states, rnn.initial_state(2, torch.zeros(1))) if name == "S"]
    assert s.shape == (1, 2, 7, 5) and not s.abs().any()
    torch.manual_seed(0)
    compiled = CompiledCell(g, 3, 5, memory_rows=7).double()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        out, fin = compiled(x)
        oracle, _ = InterpretedCell(g, 3, 5, params=compiled.params, memory_rows=7)(x)
    torch.testing.assert_close(out, oracle)
    path = tmp_path / "cell.py"
    path.write_text(python_source(g, 3, 5), encoding="utf-8")
    with imported(path) as module:
        model = instance(g, module, compiled.params, compiled.params.state_dict()).double()
        model.memory_rows = 7
        with torch.no_grad():
            got, state = model(x)
    torch.testing.assert_close(got, out, atol=1e-12, rtol=1e-12)
    assert state[1].shape == (2, 7, 5)


HEAD = """
name: t
inputs: [x]
{extra}
states: [h, S]
memory_states: [S]
output: h
nodes:
  h: tanh(linear(x, h_prev, {read}))
  S: {update}
"""
UPDATE = "stack(S_prev, linear(h), linear(h), linear(h), sigmoid(linear(h)))"


@pytest.mark.parametrize("read, update, extra, message", [
    ("top(h_prev)", UPDATE, "", "top() reads a memory as argument 1, but 'h_prev' is a vector"),
    ("top(S_prev)", "stack(S_prev, h, h, h)", "", "stack() takes 5 argument(s), got 4"),
    ("top(S_prev)", "stack(S_prev, h, S_prev, h, h)", "", "'S_prev' is a memory (a matrix)"),
    ("top(enc)", UPDATE, "memory: [enc]", "top() works on a memory state"),
    ("top(S_prev)", "tanh(linear(h))", "", "state 'S' is a memory state (memory_states) but its node gives a vector"),
])
def test_stack_ops_refuse_the_wrong_kinds_in_one_line(read, update, extra, message):
    with pytest.raises(CellError) as exc:
        loads_cell(HEAD.format(read=read, update=update, extra=extra), warn=False)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_stack_rnn_exports_as_torchscript_that_starts_empty(tmp_path):
    """The TorchScript module runs from its own start (an empty stack) like the Python module, and a
    stack given to it is the one it pushes on."""
    from cellsearch.export import export_cell

    ts, py = tmp_path / "cell.torchscript", tmp_path / "cell.py"
    export_cell("stack-rnn", "torchscript", ts, input_size=3, hidden_size=4, seed=1)
    export_cell("stack-rnn", "py", py, input_size=3, hidden_size=4, seed=1)
    scripted = torch.jit.load(str(ts))
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        out, state = scripted(x)
        h0 = torch.zeros(2, 4)
        same, _ = scripted(x, (h0, torch.zeros(2, 16, 4)))
        other, _ = scripted(x, (h0, torch.ones(2, 16, 4)))
    assert state[1].shape == (2, 16, 4) and torch.allclose(out, same) and not torch.allclose(out, other)
    with imported(py) as module:
        with torch.no_grad():
            want, _ = module.load()(x)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=1e-6)

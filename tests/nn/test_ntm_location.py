"""Weights states and the NTM's location addressing: what the DSL refuses (one line each), where a
weights state starts and how layers carry it, the ops' sizes, and the full ``ntm`` cell."""

from __future__ import annotations

import pytest
import torch

from cellsearch.compile import CompiledCell, InterpretedCell
from cellsearch.compile.memory import initial_weights
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import dumps_cell, loads_cell
from cellsearch.errors import CellError, CellsearchError, SizeError
from cellsearch.export.pysource import imported, instance, python_source
from cellsearch.library import get_cell
from cellsearch.nn.layers import CellRNN

CELL = """
name: t
inputs: [x]
states: [h, M, w]
memory_states: [M]
weight_states: [w]
output: h
nodes:
  wc: address(linear(h_prev), M_prev, linear(h_prev))
  w: {w}
  r: read(w, M_prev)
  h: tanh(linear(x, r, h_prev))
  M: write(M_prev, w, sigmoid(linear(h)), tanh(linear(h)))
"""
LOCATION = "sharpen(shift(interpolate(wc, w_prev, linear(h_prev)), linear(h_prev)), linear(h_prev))"


def cell(w=LOCATION, text=CELL):
    return loads_cell(text.format(w=w), warn=False)


def test_a_weights_state_loads_round_trips_and_hashes_apart():
    g = cell()
    assert g.weight_states == ("w",) and g.state_kind("w") == "weights" and g.value_kinds["w_prev"] == "weights"
    assert loads_cell(dumps_cell(g)) == g and loads_cell(dumps_cell(g, "graph")) == g
    # the same equations with w a vector state would not load; the kind of a state is part of the hash
    other = cell("interpolate(wc, w_prev, linear(h_prev))")
    assert canonical_hash(other) != canonical_hash(g)


@pytest.mark.parametrize("w, edit, message", [
    (LOCATION, ("weight_states: [w]", "weight_states: [w, q]"), "weights state 'q' is not a state"),
    (LOCATION, ("weight_states: [w]", "weight_states: [w, w]"), "weights state 'w' is listed twice"),
    (LOCATION, ("weight_states: [w]", "weight_states: [M]"), "weights state 'M' is listed twice"),
    (LOCATION, ("output: h", "output: w"), "the output 'w' is a weights state"),
    ("tanh(linear(h_prev))", ("r: read(w, M_prev)", "r: read(wc, M_prev)"),
     "state 'w' is a weights state (weight_states) but its node gives a vector"),
    ("shift(wc, linear(h_prev))", None, "weights state 'w' must be computed from its previous value"),
    ("interpolate(wc, h_prev, linear(h_prev))", None, "interpolate() needs weights over memory rows as argument 2"),
    ("shift(wc, w_prev)", None, "shift() needs a vector as argument 2, but 'w_prev' is weights over memory rows"),
    ("sharpen(M_prev, h_prev)", None, "'M_prev' is a memory (a matrix)"),
])
def test_weights_states_and_location_ops_refuse_mistakes_in_one_line(w, edit, message):
    text = CELL if edit is None else CELL.replace(*edit).replace("write(M_prev, w,", "write(M_prev, wc,")
    with pytest.raises(CellError, match=message.replace("(", r"\(").replace(")", r"\)")) as exc:
        cell(w, text)
    assert "\n" not in str(exc.value)


def test_a_weights_state_needs_a_memory_state():
    text = """
name: t
inputs: [x]
states: [h, w]
weight_states: [w]
output: h
nodes:
  w: shift(w_prev, linear(h_prev))
  h: tanh(linear(x, h_prev))
"""
    with pytest.raises(CellError, match="weights state 'w' holds weights over a memory state's rows, but the cell "
                                        "has none"):
        loads_cell(text, warn=False)


def test_shift_needs_three_features():
    g = cell()
    with pytest.raises(SizeError, match=r"shift\(\) needs a hidden size of at least 3, got 2"):
        CompiledCell(g, 4, 2)
    CompiledCell(g, 4, 3)


def test_layers_start_a_weights_state_on_row_zero_and_carry_it():
    rnn = CellRNN(cell(), 4, 6, num_layers=2, memory_rows=5)
    h, M, w = rnn.initial_state(3)
    assert w.shape == (2, 3, 5) and M.shape == (2, 3, 5, 6)
    assert torch.equal(w[1, 2], torch.tensor([1.0, 0, 0, 0, 0])) and torch.equal(w[0], initial_weights(3, 5, w))
    out, (h, M, w) = rnn(torch.randn(7, 3, 4))
    assert w.shape == (2, 3, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3))  # still a distribution over the rows
    with pytest.raises(CellsearchError, match=r"of shapes \(2, 3, 6\), \(2, 3, 5, 6\), \(2, 3, 5\)"):
        rnn(torch.randn(7, 3, 4), (h, M, w[:, :, :4]))


def test_location_ops_do_what_the_paper_says():
    from cellsearch.compile.location import interpolate, sharpen, shift

    w = torch.tensor([[0.7, 0.2, 0.1, 0.0]])
    big = torch.full((1, 3), 30.0)
    torch.testing.assert_close(interpolate(w, torch.tensor([[0.0, 0, 0, 1.0]]), big), w, atol=1e-6, rtol=0)
    forward = torch.tensor([[-30.0, -30.0, 30.0]])  # all probability on the shift +1
    torch.testing.assert_close(shift(w, forward), torch.tensor([[0.0, 0.7, 0.2, 0.1]]), atol=1e-6, rtol=0)
    back = torch.tensor([[30.0, -30.0, -30.0]])
    torch.testing.assert_close(shift(w, back), torch.tensor([[0.2, 0.1, 0.0, 0.7]]), atol=1e-6, rtol=0)
    sharp = sharpen(w, torch.full((1, 3), 5.0))  # γ = 1 + softplus(5) ≈ 6
    assert sharp[0, 0] > 0.99 and torch.isclose(sharp.sum(), torch.tensor(1.0))
    flat = sharpen(w, torch.full((1, 3), -30.0))  # γ ≈ 1: the weights unchanged
    torch.testing.assert_close(flat, w, atol=1e-5, rtol=0)
    z = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(sharpen(z + torch.tensor([1.0, 0, 0, 0], dtype=torch.float64),
                                       torch.zeros(1, 3, dtype=torch.float64)).sum(), z)
    assert g.isfinite().all()  # 0^γ has a finite gradient


def test_the_ntm_has_full_addressing_and_ntm_content_keeps_the_old_cell():
    full, content = get_cell("ntm"), get_cell("ntm-content")
    ops = {n.op for n in full.nodes}
    assert {"address", "interpolate", "shift", "sharpen", "read", "write"} <= ops and full.weight_states == ("wr", "ww")
    assert not content.weight_states and not {"interpolate", "shift", "sharpen"} & {n.op for n in content.nodes}


def test_the_ntm_compiled_matches_the_interpreter_and_exports(tmp_path):
    """The built-in ntm: generated forward and backward against the interpreter from its own
    start (float64), and the exported Python and TorchScript modules against the compiled cell."""
    torch.manual_seed(0)
    g = get_cell("ntm")
    compiled = CompiledCell(g, 3, 5, memory_rows=4).double()
    interp = InterpretedCell(g, 3, 5, params=compiled.params, memory_rows=4)
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    out_c, fin_c = compiled(x)
    out_i, fin_i = interp(x)
    torch.testing.assert_close(out_c, out_i)
    params = list(compiled.params.parameters())
    g_c = torch.autograd.grad(out_c.sum() + fin_c[4].pow(2).sum(), [x, *params], allow_unused=True)
    g_i = torch.autograd.grad(out_i.sum() + fin_i[4].pow(2).sum(), [x, *params], allow_unused=True)
    for a, b in zip(g_c, g_i):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b)
    path = tmp_path / "ntm.py"
    path.write_text(python_source(g, 3, 5), encoding="utf-8")
    with imported(path) as module:
        model = instance(g, module, compiled.params, compiled.params.state_dict()).double()
        model.memory_rows = 4
        with torch.no_grad():
            out_e, fin_e = model(x.detach())
            scripted = torch.jit.script(model)
            out_s, fin_s = scripted(x.detach())
    torch.testing.assert_close(out_e, out_c.detach())
    torch.testing.assert_close(out_s, out_c.detach())
    torch.testing.assert_close(fin_s[3], fin_c[3].detach())

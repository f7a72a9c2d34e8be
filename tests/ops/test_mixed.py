"""The mixed op (DARTS's relaxed choice): Σ_k softmax(α)_k · a_k with α a (K,) parameter of the node.

The registry's per-op tests (tests/ops/test_registry.py) run random cells that use it; here a hand-made
cell with α far from uniform (where a wrong index into the softmax would show) goes through the
generated backward, autograd through the generated forward and the interpreter in float64, α's
gradient is checked against its closed form, and the fused runtime refuses it in one line.
"""

from __future__ import annotations

import pytest
import torch

from cellsearch.compile import CompiledCell, InterpretedCell
from cellsearch.compile.fused import triton_available
from cellsearch.errors import CellsearchError
from tests.support.differential import assert_same

CELL = """
name: mixed_cell
inputs: [x]
states: [h, c]
output: h
nodes:
  a: linear(x, h_prev)
  c: mixed(tanh(a), sigmoid(a), c_prev, 0.5)
  h: mixed(tanh(linear(c)), h_prev, x)
"""


def _graph():
    from cellsearch.dsl.io import loads_cell

    return loads_cell(CELL)


def _skewed(cell) -> None:
    """α far from uniform, so every argument has its own weight."""
    with torch.no_grad():
        cell.params.c__alpha.copy_(torch.tensor([2.0, -1.0, 0.5, -0.3]))
        cell.params.h__alpha.copy_(torch.tensor([-1.5, 1.0, 0.25]))


@pytest.mark.parametrize("mode", ["fused", "autograd"])
def test_compiled_matches_interpreter_with_skewed_alpha(mode, monkeypatch):
    real = CompiledCell.__init__

    def init(self, *a, **kw):
        real(self, *a, **kw)
        _skewed(self)

    monkeypatch.setattr(CompiledCell, "__init__", init)
    assert_same(_graph(), 4, 4, T=4, B=3, mode=mode, tol=1e-9)


def test_alpha_gradient_is_the_softmax_jacobian_rule():
    """dα_k = s_k(⟨g, a_k⟩ − Σ_m s_m⟨g, a_m⟩) over batch and hidden: checked on one step of h = mixed(x, h_prev)."""
    from cellsearch.dsl.io import loads_cell

    graph = loads_cell("name: m\ninputs: [x]\nstates: [h]\nnodes:\n  h: mixed(x, h_prev, tanh(x))\n")
    cell = CompiledCell(graph, 3, 3).double()
    with torch.no_grad():
        cell.params.h__alpha.copy_(torch.tensor([0.3, -0.7, 1.1]))
    x = torch.randn(1, 2, 3, dtype=torch.float64)
    h0 = torch.randn(2, 3, dtype=torch.float64)
    out, _ = cell(x, (h0,))
    g = torch.randn_like(out)
    (d_alpha,) = torch.autograd.grad((out * g).sum(), [cell.params.h__alpha])
    s = torch.softmax(cell.params.h__alpha.detach(), -1)
    inner = torch.stack([(g[0] * a).sum() for a in (x[0], h0, torch.tanh(x[0]))])
    torch.testing.assert_close(d_alpha, s * (inner - (s * inner).sum()), atol=1e-12, rtol=1e-12)
    interp = InterpretedCell(graph, 3, 3, params=cell.params)
    out_i, _ = interp(x, (h0,))
    torch.testing.assert_close(out, out_i)


def test_the_parameter_has_one_weight_per_argument():
    graph = _graph()
    cell = CompiledCell(graph, 4, 4)
    assert cell.params.c__alpha.shape == (4,) and cell.params.h__alpha.shape == (3,)
    assert graph.param_count(4, 4) == sum(p.numel() for p in cell.params.parameters())


def test_one_argument_is_refused_in_one_line():
    from cellsearch.dsl.io import loads_cell
    from cellsearch.errors import CellError

    with pytest.raises(CellError, match="mixed"):
        loads_cell("name: m\ninputs: [x]\nstates: [h]\nnodes:\n  h: mixed(x)\n")


@pytest.mark.skipif(not triton_available(), reason="Triton is not installed")
def test_fused_pointwise_refuses_it_in_one_line(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    cell = CompiledCell(_graph(), 4, 4, pointwise="fused")
    with pytest.raises(CellsearchError, match=r"does not support mixed\(\) in the time loop") as err:
        cell(torch.randn(2, 3, 4), None)
    assert "\n" not in str(err.value)



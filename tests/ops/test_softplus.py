"""The softplus op: its value (torch's F.softplus, also at the ends the fused kernel treats
apart), log(softplus(...)) accepted, where the spaces offer it (the registry's tests run the
differential checks on it)."""

from __future__ import annotations

import pytest
import torch

from cellsearch.compile.fused import triton_available
from cellsearch.compile.interpreter import InterpretedCell
from cellsearch.compile.cell import CompiledCell
from cellsearch.dsl.equations import format_equation
from cellsearch.dsl.io import loads_cell
from cellsearch.ops.registry import ACTIVATIONS
from cellsearch.spaces.vocabulary import _graph_op as graph_op

CELL = "name: s\ninputs: [x]\nstates: [h]\noutput: h\nnodes:\n  h: softplus(x + 0 * h_prev)\n"


def test_softplus_is_torch_softplus():
    g = loads_cell(CELL)
    x = torch.randn(1, 2, 3, dtype=torch.float64) * 30
    out, _ = InterpretedCell(g, 3, 3).double()(x)
    torch.testing.assert_close(out[0], torch.nn.functional.softplus(x[0]))
    assert format_equation(g, "h") == "softplus(x + 0 * h_prev)"


def test_log_of_softplus_is_accepted():
    g = loads_cell("name: s\ninputs: [x]\nstates: [h]\noutput: h\nnodes:\n  h: log(softplus(linear(x, h_prev)))\n")
    assert g.value_ranges[g.node_map["h"].args[0]] == "positive"


@pytest.mark.skipif(not triton_available(), reason="Triton is not installed")
def test_fused_softplus_matches_at_both_ends(monkeypatch):
    """Very negative (log1p's series), moderate and above the threshold, forward and backward."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    g = loads_cell(CELL)
    eager = CompiledCell(g, 4, 4, pointwise="eager").double()
    fused = CompiledCell(g, 4, 4, params=eager.params, pointwise="fused")
    x = torch.tensor([[[-60.0, -12.0, -9.5, -1.0], [0.0, 3.0, 19.0, 45.0]]], dtype=torch.float64, requires_grad=True)
    outs = []
    for cell in (eager, fused):
        out, _ = cell(x)
        outs.append((out, torch.autograd.grad(out.sum(), x)[0]))
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=0, rtol=1e-8)
    torch.testing.assert_close(outs[1][1], outs[0][1], atol=0, rtol=1e-8)
    assert bool((outs[1][0] > 0).all())
    assert "tl.log(1.0 + tl.exp(" in fused.program.fused.source  # (it ran in the kernel, not hoisted)


def test_spaces_do_not_offer_softplus():
    assert "softplus" not in ACTIVATIONS
    with pytest.raises(ValueError, match="cannot be used in a graph space"):
        graph_op("softplus")

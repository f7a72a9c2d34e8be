"""The exp op: its value, its equations, where the spaces offer it (the registry's tests run the
differential checks on it: tests/test_op_registry.py)."""

from __future__ import annotations

import pytest
import torch

from cellsearch.compile.interpreter import InterpretedCell
from cellsearch.dsl.equations import format_equation
from cellsearch.dsl.io import loads_cell
from cellsearch.ops.registry import ACTIVATIONS, OPS
from cellsearch.spaces.vocabulary import _graph_op as graph_op

CELL = "name: e\ninputs: [x]\nstates: [h]\noutput: h\nnodes:\n  h: exp(linear(x, h_prev)) * 0.5\n"


def test_exp_is_registered_and_computes_e_to_the_a():
    g = loads_cell(CELL)
    torch.manual_seed(0)
    cell = InterpretedCell(g, 3, 3).double()
    x = torch.randn(1, 2, 3, dtype=torch.float64)
    out, _ = cell(x)
    p = dict(cell.params.named_parameters())
    lin = [n for n in g.nodes if n.op == "linear"][0].name
    pre = x[0] @ p[f"{lin}__w0"].T + torch.zeros(2, 3, dtype=torch.float64) @ p[f"{lin}__w1"].T + p[f"{lin}__b"]
    torch.testing.assert_close(out[0], torch.exp(pre) * 0.5)
    assert "exp" in OPS and OPS["exp"].result_range(None, [None]) == "positive"


def test_exp_equations_round_trip():
    g = loads_cell(CELL)
    assert format_equation(g, "h") == "exp(linear(x, h_prev)) * 0.5"


def test_spaces_do_not_offer_exp():
    """Search spaces draw from their own vocabulary: exp is not an activation they pick."""
    assert "exp" not in ACTIVATIONS
    with pytest.raises(ValueError, match="cannot be used in a graph space"):
        graph_op("exp")

"""The sqrt op: its value, the positive-argument rule (not relu's non-negative outputs: an
infinite derivative at 0), its equations and where the spaces offer it (the registry's tests
run the differential checks on it)."""

from __future__ import annotations

import pytest
import torch

from cellsearch.compile.interpreter import InterpretedCell
from cellsearch.dsl.equations import format_equation
from cellsearch.dsl.io import loads_cell
from cellsearch.errors import CellError
from cellsearch.ops.registry import ACTIVATIONS
from cellsearch.spaces.vocabulary import _graph_op as graph_op


def cell(expr: str):
    return loads_cell(f"name: q\ninputs: [x]\nstates: [h]\noutput: h\nnodes:\n  h: {expr}\n")


def test_sqrt_of_a_softplus():
    g = cell("sqrt(softplus(x)) + 0 * h_prev")
    x = torch.randn(1, 2, 3, dtype=torch.float64)
    out, _ = InterpretedCell(g, 3, 3).double()(x)
    torch.testing.assert_close(out[0], torch.sqrt(torch.nn.functional.softplus(x[0])))
    assert format_equation(g, "h") == "sqrt(softplus(x)) + 0 * h_prev"


@pytest.mark.parametrize("arg", ["exp(x)", "sigmoid(linear(x, h_prev))", "sqrt(exp(h_prev))", "softplus(x) + 1"])
def test_sqrt_accepts_arguments_known_positive(arg):
    cell(f"tanh(linear(x, h_prev)) * sqrt({arg})")


@pytest.mark.parametrize("arg", ["x", "h_prev", "relu(x)", "tanh(x)", "relu(x) + 0"])
def test_sqrt_refuses_an_argument_not_known_positive_in_one_line(arg):
    with pytest.raises(CellError) as err:
        cell(f"tanh(linear(x, h_prev)) * sqrt({arg})")
    msg = str(err.value)
    assert "\n" not in msg and "sqrt() needs an argument known to be positive" in msg


def test_spaces_do_not_offer_sqrt():
    assert "sqrt" not in ACTIVATIONS
    with pytest.raises(ValueError, match="cannot be used in a graph space"):
        graph_op("sqrt")

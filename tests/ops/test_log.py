"""The log op: its value, the positive-argument rule checked at validation, its equations and
where the spaces offer it (the registry's tests run the differential checks on it)."""

from __future__ import annotations

import pytest
import torch

from cellsearch.compile.interpreter import InterpretedCell
from cellsearch.dsl.equations import format_equation
from cellsearch.dsl.io import loads_cell
from cellsearch.errors import CellError
from cellsearch.ops.registry import ACTIVATIONS
from cellsearch.spaces.vocabulary import _graph_op as graph_op


def cell(expr: str, states: str = "[h]"):
    return loads_cell(f"name: l\ninputs: [x]\nstates: {states}\noutput: h\nnodes:\n  h: {expr}\n")


def test_log_of_a_sigmoid_is_the_log_sigmoid():
    g = cell("log(sigmoid(x)) + h_prev")
    torch.manual_seed(0)
    x = torch.randn(2, 2, 3, dtype=torch.float64)
    out, _ = InterpretedCell(g, 3, 3).double()(x)
    torch.testing.assert_close(out[0], torch.nn.functional.logsigmoid(x[0]))
    torch.testing.assert_close(out[1], torch.nn.functional.logsigmoid(x[0]) + torch.nn.functional.logsigmoid(x[1]))


@pytest.mark.parametrize("arg", ["sigmoid(x)", "exp(linear(x, h_prev))", "sigmoid(x) * sigmoid(h_prev) + 0.5",
                                 "2 * exp(x) + 1"])
def test_log_accepts_arguments_known_positive(arg):
    g = cell(f"tanh(linear(x, h_prev)) + log({arg})")
    assert "log" in format_equation(g, "h")


@pytest.mark.parametrize("arg", ["x", "h_prev", "tanh(x)", "linear(x, h_prev)", "relu(x)", "sigmoid(x) - 0.5",
                                 "exp(x) * -1"])
def test_log_refuses_an_argument_not_known_positive_in_one_line(arg):
    with pytest.raises(CellError) as err:
        cell(f"tanh(linear(x, h_prev)) + log({arg})")
    msg = str(err.value)
    assert "\n" not in msg
    assert "log() needs an argument known to be positive" in msg and "sigmoid" in msg and "exp" in msg


def test_spaces_do_not_offer_log():
    assert "log" not in ACTIVATIONS
    with pytest.raises(ValueError, match="cannot be used in a graph space"):
        graph_op("log")

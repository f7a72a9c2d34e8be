"""Memory states and the NTM ops: what the DSL refuses (one line each), the ntm cell in layers,
models and from the CLI (train, resume, generate), and its memory's start."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.compile import CompiledCell
from cellsearch.compile.memory import initial_memory
from cellsearch.dsl.io import loads_cell
from cellsearch.errors import CellError, CellsearchError
from cellsearch.library import get_cell
from cellsearch.nn.layers import CellRNN

HEAD = """
name: t
inputs: [x]
{extra}
states: [h, M]
memory_states: [M]
output: h
nodes:
  w: address(linear(h_prev), M_prev, linear(h_prev))
  r: read(w, M_prev)
  h: tanh(linear(x, r, h_prev))
  M: {write}
"""


def cell(write="write(M_prev, w, sigmoid(linear(h)), tanh(linear(h)))", extra=""):
    return loads_cell(HEAD.format(write=write, extra=extra), warn=False)


def test_a_valid_ntm_head_loads_and_round_trips():
    from cellsearch.dsl.io import dumps_cell

    g = cell()
    assert g.memory_states == ("M",) and g.value_kinds["w"] == "weights" and g.value_kinds["M"] == "matrix"
    assert loads_cell(dumps_cell(g)) == g
    assert loads_cell(dumps_cell(g, "graph")) == g


@pytest.mark.parametrize("write, extra, message", [
    ("tanh(M_prev)", "", "'M_prev' is a memory (a matrix): read it with attend(query, M)"),
    ("write(M_prev, h, sigmoid(linear(h)), h)", "", "write() needs weights over memory rows as argument 2"),
    ("write(M_prev, w, r, w)", "", "write() needs a vector as argument 4, but 'w' is weights over memory rows"),
    ("write(enc, w, h, h)", "memory: [enc]", "write() works on a memory state"),
    ("write(M_prev, w, h, h) + 1", "", "write(...) is a memory (a matrix)"),
])
def test_memory_ops_refuse_the_wrong_kinds_in_one_line(write, extra, message):
    with pytest.raises(CellError, match=message.replace("(", r"\(").replace(")", r"\)")) as exc:
        cell(write, extra)
    assert "\n" not in str(exc.value)


def test_memory_state_rules():
    text = HEAD.format(write="write(M_prev, w, h, h)", extra="")
    with pytest.raises(CellError, match="the output 'M' is a memory state"):
        loads_cell(text.replace("output: h", "output: M"), warn=False)
    with pytest.raises(CellError, match="memory state 'Q' is not a state"):
        loads_cell(text.replace("memory_states: [M]", "memory_states: [M, Q]"), warn=False)
    with pytest.raises(CellError, match="state 'h' is a vector state but its node gives a memory"):
        loads_cell(text.replace("h: tanh(linear(x, r, h_prev))", "h: write(M_prev, w, h_prev, h_prev)")
                   .replace("M: write(M_prev, w, h, h)", "M: write(M_prev, w, r, r)"), warn=False)
    with pytest.raises(CellError, match=r"attend\(\) reads a given memory"):
        loads_cell(text.replace("h: tanh(linear(x, r, h_prev))", "h: tanh(linear(x, r, attend(h_prev, M_prev)))"),
                   warn=False)
    two = text.replace("states: [h, M]", "states: [h, M, M2]").replace("memory_states: [M]", "memory_states: [M, M2]")
    two = two.replace("M: write(M_prev, w, h, h)", "w2: address(linear(h_prev), M2_prev, linear(h_prev))\n"
                      "  M: write(M2_prev, w2, h_prev, h_prev)\n  M2: write(M2_prev, w2, h, h)")
    with pytest.raises(CellError, match="memory state 'M' must be written from its previous value"):
        loads_cell(two, warn=False)


def test_layers_carry_the_memory_and_start_it_with_distinct_rows():
    rnn = CellRNN("ntm-content", 4, 6, num_layers=2, memory_rows=5)
    h, c, M = rnn.initial_state(3)
    assert M.shape == (2, 3, 5, 6) and h.shape == (2, 3, 6)
    assert torch.equal(M[0, 0], initial_memory(1, 5, 6, M)[0])
    assert len({tuple(row.tolist()) for row in M[0, 0]}) == 5  # rows differ: content addressing can tell them apart
    out, (h, c, M) = rnn(torch.randn(7, 3, 4))
    assert out.shape == (7, 3, 6) and M.shape == (2, 3, 5, 6)
    with pytest.raises(CellsearchError, match=r"of shapes \(2, 3, 6\), \(2, 3, 6\), \(2, 3, 5, 6\)"):
        rnn(torch.randn(7, 3, 4), (h, c, M[:, :, :4]))
    with pytest.raises(CellsearchError, match="memory_rows"):
        CellRNN("ntm", 4, 6, memory_rows=0)


def test_the_memory_matters():
    """The same input with another start of the memory gives other outputs."""
    torch.manual_seed(0)
    cell_ = CompiledCell(get_cell("ntm-content"), 4, 6, memory_rows=5)
    x = torch.randn(5, 2, 4)
    out, _ = cell_(x)
    h0 = torch.zeros(2, 6)
    out2, _ = cell_(x, (h0, h0, torch.randn(2, 5, 6)))
    assert not torch.allclose(out, out2)


@pytest.mark.slow
def test_ntm_trains_resumes_and_generates_from_the_cli(tmp_path):
    runner = CliRunner()
    base = ["train", "ntm", "--task", "copy", "--hidden", "8", "--memory-rows", "6", "-t", "max_length=4",
            "-t", "eval_examples=16", "--json"]
    res = runner.invoke(app, [*base, "--steps", "4", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    whole = json.loads(res.output)
    assert whole["cell"] == "ntm" and whole["status"] == "ok"
    res = runner.invoke(app, [*base, "--steps", "2", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "ntm", "--resume", str(tmp_path / "b"), "--steps", "4", "--json",
                              "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["metrics"] == whole["metrics"]  # resumed bit for bit
    res = runner.invoke(app, ["generate", str(tmp_path / "a"), "--prompt", "abc=", "--length", "4"])
    assert res.exit_code == 0 and res.output.startswith("abc="), res.output
    res = runner.invoke(app, [*base[:-1], "--steps", "1", "--memory-rows", "0", "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "--memory-rows must be at least 1" in res.output

"""attend(q, K, V): keys from one memory, values from another (the memory network's hops)."""

from __future__ import annotations

import pytest
import torch

from cellsearch.compile.attention import Memory
from cellsearch.compile.interpreter import InterpretedCell
from cellsearch.dsl.io import loads_cell
from cellsearch.errors import CellError
from tests.support.differential import assert_same

KV = """
name: kv
inputs: [x]
memory: [k, v]
states: [h]
output: h
nodes:
  c: attend({query}, k, v, kind={kind})
  h: tanh(linear(x, c, h_prev))
"""


@pytest.mark.parametrize("kind", ["dot", "general", "additive"])
@pytest.mark.parametrize("query", ["h_prev", "x"])  # in the loop, hoisted
@pytest.mark.parametrize("mode", ["fused", "autograd"])
def test_keys_and_values_from_two_memories_match_the_interpreter(kind, query, mode):
    assert_same(loads_cell(KV.format(kind=kind, query=query)), 5, 5, T=3, B=2, mode=mode)


def test_the_interpreter_scores_the_keys_and_sums_the_values():
    g = loads_cell(KV.format(kind="dot", query="x").replace("tanh(linear(x, c, h_prev))", "x + c"))
    cell = InterpretedCell(g, 4, 4).double()
    x = torch.randn(1, 2, 4, dtype=torch.float64)
    keys, values = (torch.randn(2, 3, 4, dtype=torch.float64) for _ in range(2))
    mask = torch.tensor([[True, True, False], [True, True, True]])
    out, _ = cell(x, (torch.zeros(2, 4, dtype=torch.float64),), (), (Memory(keys, mask), Memory(values, mask)))
    p = torch.softmax(torch.einsum("bh,bnh->bn", x[0], keys).masked_fill(~mask, float("-inf")), -1)
    torch.testing.assert_close(out[0], x[0] + torch.einsum("bn,bnh->bh", p, values))


def test_a_values_argument_must_be_a_given_memory():
    bad = KV.format(kind="dot", query="x").replace("attend(x, k, v,", "attend(x, k, h_prev,")
    with pytest.raises(CellError, match="reads a memory as argument 3"):
        loads_cell(bad)

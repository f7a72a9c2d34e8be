"""Inputs as embedding-table rows (compile/tokens.py): the prologue run once per table row and
looked up by token gives what it gives run over ``embedding(tokens)``, outputs and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from cellsearch.compile.interpreter import InterpretedCell
from cellsearch.compile.cell import CompiledCell
from cellsearch.compile.tokens import TokenInputs
from cellsearch.library import builtin_names, get_cell
from cellsearch.nn import model as model_module
from cellsearch.nn.model import ModelConfig, SeqModel
from tests.support.generators import cells

H = 6
CLOSE = dict(rtol=1e-12, atol=1e-12)


def _run(cell: CompiledCell, x, table, weights) -> tuple:
    out, finals = cell(x)
    loss = (out * weights[0]).sum() + sum((f * w).sum() for f, w in zip(finals, weights[1:]))
    return loss + 0.0 * table.sum(), out, finals  # (a cell may read neither x nor a parameter)


def assert_rows_match_tensor(graph, V: int = 7, T: int = 6, B: int = 5, seed: int = 0,
                             finite_only: bool = False) -> bool:
    """Compiled cell of ``graph`` on TokenInputs vs on the looked-up tensor, float64: outputs, final
    states, and the gradients of the table and every parameter. Returns ``reads_token_rows``.

    ``finite_only`` (random cells): reject a cell whose values overflow (exp of exp(...) is inf, and
    inf - inf is NaN, which never compares equal) instead of comparing NaNs."""
    torch.manual_seed(seed)
    cell = CompiledCell(graph, H, H).double()
    table = torch.randn(V, H, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, V, (T, B))
    weights = [torch.randn(T, B, H, dtype=torch.float64)] + [torch.randn(B, H, dtype=torch.float64)
                                                             for _ in graph.states]
    params = [table, *cell.params.parameters()]
    loss_r, out_r, fin_r = _run(cell, TokenInputs(table, tokens), table, weights)
    grads_r = torch.autograd.grad(loss_r, params, allow_unused=True)
    loss_t, out_t, fin_t = _run(cell, F.embedding(tokens, table), table, weights)
    grads_t = torch.autograd.grad(loss_t, params, allow_unused=True)
    if finite_only and not all(t.isfinite().all() for t in (out_t, *fin_t, *(g for g in grads_t if g is not None))):
        reject()
    torch.testing.assert_close(out_r, out_t, **CLOSE)
    for a, b in zip(fin_r, fin_t):
        torch.testing.assert_close(a, b, **CLOSE)
    for a, b in zip(grads_r, grads_t):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, **CLOSE)
    return cell.reads_token_rows


@pytest.mark.parametrize("name", builtin_names(memory=False))
def test_builtin_cells_on_table_rows(name):
    assert_rows_match_tensor(get_cell(name))


def test_lstm_and_gru_read_table_rows():
    """(so the comparisons above exercise the row path, not only its fallback)"""
    assert CompiledCell(get_cell("lstm"), H, H).reads_token_rows
    assert CompiledCell(get_cell("gru"), H, H).reads_token_rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=cells(static=False), seed=st.integers(0, 1000))
def test_random_cells_on_table_rows(graph, seed):
    assert_rows_match_tensor(graph, seed=seed, finite_only=True)


@pytest.mark.parametrize("config", [{}, {"num_layers": 2}, {"state_limit": 0.05}, {"tie_weights": True}])
def test_model_uses_table_rows_with_the_same_result(config, monkeypatch):
    """SeqModel's first layer reads table rows for a small vocabulary; the result is that of the
    embedded tensor (forced with TABLE_ROWS_PER_SEQUENCE = 0). ``state_limit`` 0.05: every layer
    leaves the bound, so the step-by-step recomputation (which needs the tensor) runs too."""
    torch.manual_seed(0)
    model = SeqModel("lstm", ModelConfig(vocab_size=9, hidden_size=H, **config)).double()
    tokens = torch.randint(0, 9, (8, 4))
    assert isinstance(model.cell_inputs(tokens), TokenInputs)

    def loss_and_grads():
        logits, state = model(tokens)
        loss = logits.square().mean() + sum(s.square().sum() for s in state)
        return loss, torch.autograd.grad(loss, list(model.parameters()))

    loss_rows, grads_rows = loss_and_grads()
    monkeypatch.setattr(model_module, "TABLE_ROWS_PER_SEQUENCE", 0)
    assert not isinstance(model.cell_inputs(tokens), TokenInputs)
    loss_tensor, grads_tensor = loss_and_grads()
    torch.testing.assert_close(loss_rows, loss_tensor, **CLOSE)
    for a, b in zip(grads_rows, grads_tensor):
        torch.testing.assert_close(a, b, **CLOSE)


def test_model_keeps_the_tensor_where_rows_do_not_apply():
    tokens = torch.randint(0, 9, (8, 4))
    dropped = SeqModel("lstm", ModelConfig(vocab_size=9, hidden_size=H, dropout=0.3))
    assert not isinstance(dropped.cell_inputs(tokens), TokenInputs)  # dropout draws per token
    dropped.eval()
    assert isinstance(dropped.cell_inputs(tokens), TokenInputs)  # (none to draw when evaluating)
    one_step = SeqModel("lstm", ModelConfig(vocab_size=9, hidden_size=H))
    assert not isinstance(one_step.cell_inputs(tokens[:1, :2]), TokenInputs)  # 9 rows for 2 tokens
    large = SeqModel("lstm", ModelConfig(vocab_size=10_000, hidden_size=H))
    assert not isinstance(large.cell_inputs(tokens), TokenInputs)  # the table would cost more than the batch
    interpreted = SeqModel("lstm", ModelConfig(vocab_size=9, hidden_size=H))
    interpreted.rnn.cells[0] = InterpretedCell(get_cell("lstm"), H, H)
    assert not isinstance(interpreted.cell_inputs(tokens), TokenInputs)


def test_bad_token_inputs_are_one_clear_error():
    cell = CompiledCell(get_cell("lstm"), H, H)
    with pytest.raises(Exception, match=r"expected tokens \(T, B\) and a table \(V, 6\)"):
        cell(TokenInputs(torch.randn(5, H + 1), torch.zeros(3, 2, dtype=torch.long)))
    with pytest.raises(Exception, match="empty"):
        cell(TokenInputs(torch.randn(5, H), torch.zeros(0, 2, dtype=torch.long)))


def _cell(nodes: str):
    from cellsearch.dsl.io import loads_cell

    return loads_cell("name: c\ninputs: [x]\nstates: [h]\noutput: h\nnodes:\n" + nodes)


@pytest.mark.parametrize("nodes", ["  h: tanh(linear(h_prev))\n",  # the loop reads nothing from x
                                   "  h: tanh(linear(h_prev) + x)\n"])  # x itself, elementwise
def test_a_population_looks_up_its_members_rows_as_each_alone(nodes):
    from cellsearch.compile.population import population_forward

    graph = _cell(nodes)
    torch.manual_seed(0)
    cells = [CompiledCell(graph, H, H).double() for _ in range(3)]
    assert cells[0].reads_token_rows
    tables = [torch.randn(5, H, dtype=torch.float64) for _ in cells]
    tokens = [torch.randint(0, 5, (4, 2)) for _ in cells]
    batched = population_forward(cells, [TokenInputs(t, k) for t, k in zip(tables, tokens)], [None] * 3)
    for cell, table, tok, (out, finals) in zip(cells, tables, tokens, batched):
        alone, alone_finals = cell(F.embedding(tok, table))
        torch.testing.assert_close(out, alone, **CLOSE)
        torch.testing.assert_close(finals[0], alone_finals[0], **CLOSE)


def test_a_population_refuses_a_token_outside_the_table():
    """(in the members' stacked tables it would read another member's row)"""
    from cellsearch.compile.population import population_forward
    from cellsearch.errors import CellsearchError

    cells = [CompiledCell(get_cell("gru"), H, H) for _ in range(2)]
    tokens = [torch.zeros(3, 2, dtype=torch.long), torch.full((3, 2), 5)]
    with pytest.raises(CellsearchError, match=r"token ids must lie in \[0, 5\)"):
        population_forward(cells, [TokenInputs(torch.randn(5, H), t) for t in tokens], [None, None])

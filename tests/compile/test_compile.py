"""Differential tests: the compiled layer against the reference interpreter (the oracle)."""

from __future__ import annotations

import pytest
import torch

from cellsearch.compile import CellParameters, CompiledCell, InterpretedCell
from cellsearch.compile.attention import Memory
from cellsearch.compile.codegen import CellProgram
from cellsearch.dsl.io import loads_cell
from cellsearch.errors import CellsearchError, SizeError
from cellsearch.library import builtin_names, get_cell
from tests.support.differential import CELLS, assert_same


@pytest.mark.parametrize("name", builtin_names())
@pytest.mark.parametrize("mode", ["fused", "autograd"])
def test_builtin_cells_match_interpreter(name, mode):
    assert_same(get_cell(name), 6, 6, mode=mode)


@pytest.mark.parametrize("name", ["lstm", "gru", "vanilla", "fgr", "nas", "mut3"])
def test_builtin_cells_with_input_size_different_from_hidden(name):
    assert_same(get_cell(name), 5, 7, T=4, B=2)


@pytest.mark.parametrize("T", [1, 2])
def test_short_sequences(T):
    assert_same(get_cell("lstm"), 4, 4, T=T)
    assert_same(get_cell("fgr"), 4, 4, T=T)


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("mode", ["fused", "autograd"])
def test_special_structures(name, mode):
    g = loads_cell(CELLS[name])
    if name == "two_inputs":
        torch.manual_seed(0)
        compiled = CompiledCell(g, 4, 4, mode=mode).double()
        interp = InterpretedCell(g, 4, 4, params=compiled.params)
        xs = (torch.randn(3, 2, 4, dtype=torch.float64), torch.randn(3, 2, 4, dtype=torch.float64))
        torch.testing.assert_close(compiled(xs)[0], interp(xs)[0])
        return
    assert_same(g, 4, 4, mode=mode)


def test_generated_code_is_readable_and_fuses_the_recurrent_matmul():
    src = CellProgram(get_cell("lstm"), 8, 8).source
    step = src[src.index("def step("):src.index("def step_backward(")]
    assert step.count("linear_add(") == 1 and "torch.mm(" not in step  # one matmul per step for all four gates
    assert "[t]" not in src  # no per-step indexing of sequences
    assert "c = torch.addcmul(c_mul, i, g)" in step
    prologue = src[:src.index("def step(")]
    assert prologue.count("F.linear(x,") == 1  # all input projections in one matmul


def test_compiled_gradients_do_not_create_reference_cycles():
    import gc
    import weakref

    cell = CompiledCell(get_cell("lstm"), 4, 4)
    x = torch.randn(3, 2, 4)
    out, (h, c) = cell(x)
    ref = weakref.ref(out)
    (out.sum() + h.sum()).backward()
    del out, h, c
    gc.disable()
    try:
        assert ref() is None
    finally:
        gc.enable()


def test_no_grad_path_matches():
    cell = CompiledCell(get_cell("gru"), 4, 6)
    x = torch.randn(5, 2, 4)
    out, _ = cell(x)
    with torch.no_grad():
        out2, _ = cell(x)
    torch.testing.assert_close(out, out2)


def test_bad_shapes_raise_clear_errors():
    cell = CompiledCell(get_cell("lstm"), 4, 6)
    with pytest.raises(CellsearchError, match=r"expected input of shape \(T, B, 4\)"):
        cell(torch.randn(3, 2, 5))
    with pytest.raises(CellsearchError, match="has 2 states"):
        cell(torch.randn(3, 2, 4), (torch.zeros(2, 6),))
    with pytest.raises(CellsearchError, match="empty"):
        cell(torch.randn(0, 2, 4))


def test_size_mismatch_is_reported_at_build_time():
    with pytest.raises(SizeError, match="input 'x' has size 16"):
        CompiledCell(get_cell("mut1"), 16, 32)
    with pytest.raises(SizeError):
        CellParameters(get_cell("mut2"), 16, 32)


def test_parameters_follow_init_attributes():
    params = CellParameters(get_cell("lstm-b"), 4, 8)
    f_lin = get_cell("lstm-b").node_map["f"].args[0]
    assert torch.all(getattr(params, f"{f_lin}__b") == 1.0)
    g = loads_cell("""
name: lin1
states: [h]
nodes:
  h: tanh(linear(h_prev, diag_init=1.0) + linear(x))
""")
    p = CellParameters(g, 4, 8)
    lin = next(n for n in g.nodes if n.op == "linear" and n.args == ("h_prev",))
    w = getattr(p, f"{lin.name}__w0")
    assert torch.allclose(w.diagonal(), torch.ones(8), atol=0.1)
    off = w - torch.diag(w.diagonal())
    assert off.abs().max() < 0.05


@pytest.mark.slow
def test_torch_compile_path_matches(tmp_path, monkeypatch):
    pytest.importorskip("torch._dynamo")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch.manual_seed(0)
    g = get_cell("gru")
    compiled = CompiledCell(g, 4, 4, compile=True)
    eager = CompiledCell(g, 4, 4, params=compiled.params)
    x = torch.randn(3, 2, 4)
    try:
        out_c, _ = compiled(x)
    except Exception as exc:  # pragma: no cover - no C++ toolchain for inductor
        pytest.skip(f"torch.compile unavailable here: {exc}")
    out_e, _ = eager(x)
    torch.testing.assert_close(out_c, out_e, atol=1e-5, rtol=1e-5)
    g_c = torch.autograd.grad(out_c.sum(), list(compiled.params.parameters()))
    g_e = torch.autograd.grad(out_e.sum(), list(compiled.params.parameters()))
    for a, b in zip(g_c, g_e):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():  # pragma: no cover - runs only where a GPU exists
    g = get_cell("lstm")
    cpu = CompiledCell(g, 8, 8)
    gpu = CompiledCell(g, 8, 8).cuda()
    gpu.params.load_state_dict(cpu.params.state_dict())
    x = torch.randn(5, 3, 8)
    torch.testing.assert_close(gpu(x.cuda())[0].cpu(), cpu(x)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch", [4, 7])
def test_matmul_helpers_agree_with_and_without_packed_weights(batch, monkeypatch):
    from cellsearch.compile import matmuls as k

    monkeypatch.setattr(k, "PACK_MIN_ELEMENTS", 0)  # pack even this small weight
    torch.manual_seed(0)
    w = torch.randn(10, 6)  # nn.Linear layout: out 10, in 6
    a, base, d, other = torch.randn(batch, 6), torch.randn(batch, 10), torch.randn(batch, 10), torch.randn(batch, 6)
    fwd, bwd = k.pack_for_forward(w, 4), k.pack_for_backward(w, 4)  # packed for batch 4, used with others too
    close = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k.linear(a, fwd), a @ w.t(), **close)
    torch.testing.assert_close(k.linear_add(a, fwd, base), base + a @ w.t(), **close)
    bias = torch.randn(10)
    torch.testing.assert_close(k.linear_add(a, fwd, bias), bias + a @ w.t(), **close)
    torch.testing.assert_close(k.linear_add(a, fwd, base[:1]), base[:1] + a @ w.t(), **close)
    torch.testing.assert_close(k.matmul_w(d, bwd), d @ w, **close)
    torch.testing.assert_close(k.add_matmul_w(other, d, bwd), other + d @ w, **close)
    # unpacked weights (autograd, float64, CUDA) take the plain torch path
    w64 = w.double().requires_grad_()
    out = k.linear_add(a.double(), w64, base.double())
    assert out.grad_fn is not None
    torch.testing.assert_close(out, (base + a @ w.t()).double(), **close)
    assert k.pack_for_forward(w64, 4) is w64
    monkeypatch.setattr(k, "PACK_MIN_ELEMENTS", w.numel() + 1)  # below the size where packing pays
    assert k.pack_for_forward(w, 4) is w and k.pack_for_backward(w, 4) is w


@pytest.mark.parametrize("name,hidden,packed", [("lstm", 64, False), ("gru", 64, False), ("lstm", 128, False),
                                                ("gru", 128, False), ("lstm", 256, True), ("gru", 256, True)])
def test_time_loop_weights_packed_from_hidden_256(name, hidden, packed):
    """The runtime hands the time loop prepacked weights where packing was measured to pay
    (compile/matmuls.py: the GRU's and the LSTM's fused weights from hidden 256, neither at the
    search's sizes) and plain ones elsewhere."""
    from cellsearch.compile import matmuls
    from cellsearch.compile import loop

    if matmuls._ONEDNN is None:
        pytest.skip("this torch build has no oneDNN")
    cell = CompiledCell(get_cell(name), 8, hidden)
    with torch.no_grad():
        prepared = cell.prepare(torch.zeros(2, 32, 8))
    program = cell.program
    for backward in (False, True):
        weights = [c for c, kind in zip(loop.packed(program, prepared.consts, 32, backward), program.const_kinds)
                   if kind == "weight"]
        assert len(weights) == 1 and weights[0].is_mkldnn is packed


@pytest.mark.parametrize("name", builtin_names())
@pytest.mark.parametrize("packed", [True, False])
def test_builtin_cells_match_interpreter_in_float32(name, packed, monkeypatch):
    """float32 on CPU takes the prepacked-weight matmuls (compile/matmuls.py) in the fused runtime
    where the weights are large enough (forced here), else addmm/mm."""
    from cellsearch.compile import matmuls

    if packed:
        monkeypatch.setattr(matmuls, "PACK_MIN_ELEMENTS", 0)
    torch.manual_seed(0)
    g = get_cell(name)
    compiled = CompiledCell(g, 8, 8)
    interp = InterpretedCell(g, 8, 8, params=compiled.params)
    x = torch.randn(6, 5, 8, requires_grad=True)
    memory = tuple(Memory(torch.randn(5, 4, 8), torch.arange(4) < torch.tensor([[4], [3], [2], [4], [1]]))
                   for _ in g.memory)
    out_c, fin_c = compiled(x, None, None, memory)
    out_i, fin_i = interp(x, None, None, memory)
    torch.testing.assert_close(out_c, out_i, atol=1e-4, rtol=1e-4)
    params = [x, *compiled.params.parameters()]
    g_c = torch.autograd.grad((out_c * out_c).sum() + fin_c[0].sum(), params, allow_unused=True)
    g_i = torch.autograd.grad((out_i * out_i).sum() + fin_i[0].sum(), params, allow_unused=True)
    for a, b in zip(g_c, g_i):
        if a is not None and b is not None:
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # the inference loop packs weights too
        torch.testing.assert_close(compiled(x, None, None, memory)[0], out_i, atol=1e-4, rtol=1e-4)

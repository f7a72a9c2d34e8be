"""Fused Triton step kernels (compile/fused.py) against the interpreter, run under Triton's CPU interpreter.

The generated kernels are the ones a GPU runs; ``TRITON_INTERPRET=1`` executes them with NumPy
on the CPU, so these differential tests check the kernel code itself without a GPU. The CUDA
tests at the end (kernels compiled for the GPU, CUDA graphs) run where a GPU is present.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellsearch.compile.fused import FusedPlan, FusedProgram, triton_available
from cellsearch.compile.codegen import CellProgram
from cellsearch.compile.population import population_forward
from cellsearch.compile.cell import CompiledCell
from cellsearch.dsl.io import loads_cell
from cellsearch.errors import CellsearchError
from cellsearch.library import builtin_names, get_cell
from tests.support.differential import CELLS, assert_same
from tests.support.generators import cells
from cellsearch.ops.registry import OPS

# The ops the fused kernels compute (an op without Triton rules in the loop, mixed, runs eagerly:
# pointwise='fused' refuses it, tests/ops/test_registry.py checks that)
FUSABLE = [name for name, op in OPS.items() if op.triton or op.is_matmul or op.is_literal]

pytestmark = pytest.mark.skipif(not triton_available(), reason="Triton is not installed")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("name", builtin_names(memory=False))  # (attention runs eagerly: test below)
def test_builtin_cells_fused_match_interpreter(interpreted, name):
    """Outputs, final states and every gradient (inputs, states, parameters) in float64."""
    graph = get_cell(name)
    assert_same(graph, 6, 6, T=4, B=3, pointwise="fused", tol=1e-10)


@pytest.mark.parametrize("name", sorted(set(CELLS) - {"two_inputs"}))
def test_special_structures_fused(interpreted, name):
    """Static inputs, hoisted states, chained matmul groups, constants, inputs read elementwise."""
    assert_same(loads_cell(CELLS[name]), 4, 4, T=3, B=2, static_size=4, pointwise="fused", tol=1e-10)


def test_two_per_step_inputs_fused(interpreted):
    torch.manual_seed(0)
    graph = loads_cell(CELLS["two_inputs"])
    eager = CompiledCell(graph, 4, 4, pointwise="eager").double()
    fused = CompiledCell(graph, 4, 4, params=eager.params, pointwise="fused")
    xs = tuple(torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    results = []
    for cell in (eager, fused):
        out, _ = cell(xs)
        results.append((out, torch.autograd.grad((out * out).sum(), [*xs, *cell.params.parameters()])))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-12, rtol=1e-12)
    for a, b in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(graph=cells(ops=FUSABLE), T=st.integers(1, 3), seed=st.integers(0, 3))
def test_random_cells_fused_match_interpreter(interpreted, graph, T, seed):
    assert_same(graph, 4, 4, T=T, B=2, static_size=4, seed=seed, stable_only=True, pointwise="fused")


def test_fused_float32_close_to_eager(interpreted):
    torch.manual_seed(0)
    eager = CompiledCell(get_cell("gru"), 8, 16, pointwise="eager")
    fused = CompiledCell(get_cell("gru"), 8, 16, params=eager.params, pointwise="fused")
    x = torch.randn(6, 4, 8)
    out_e, _ = eager(x)
    out_f, _ = fused(x)
    torch.testing.assert_close(out_f, out_e, atol=1e-6, rtol=1e-5)


def test_population_through_fused_kernels(interpreted):
    """K members in one batched loop: each member equals its own cell run alone (float64)."""
    torch.manual_seed(0)
    graph = get_cell("mut1")  # two stages: a matmul between the kernels
    members = [CompiledCell(graph, 5, 5, pointwise="fused").double() for _ in range(3)]
    xs = [torch.randn(4, 2, 5, dtype=torch.float64) for _ in members]
    states = [(torch.randn(2, 5, dtype=torch.float64),) for _ in members]
    together = population_forward(members, xs, states)
    loss = sum((out * out).sum() for out, _ in together)
    grads = torch.autograd.grad(loss, [p for m in members for p in m.params.parameters()])
    alone_grads = []
    for cell, x, state, (out, fin) in zip(members, xs, states, together):
        eager = CompiledCell(graph, 5, 5, params=cell.params, pointwise="eager")
        out_a, fin_a = eager(x, state)
        torch.testing.assert_close(out, out_a, atol=1e-12, rtol=1e-12)
        alone_grads += torch.autograd.grad((out_a * out_a).sum(), list(cell.params.parameters()))
    for a, b in zip(grads, alone_grads):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_inference_runs_fused_kernels(interpreted):
    torch.manual_seed(0)
    cell = CompiledCell(get_cell("lstm"), 4, 4, pointwise="fused")
    eager = CompiledCell(get_cell("lstm"), 4, 4, params=cell.params, pointwise="eager")
    x = torch.randn(3, 2, 4)
    with torch.no_grad():
        out, _ = cell(x)
        out_e, _ = eager(x)
    assert cell.program.fused is not None
    torch.testing.assert_close(out, out_e, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name,stages", [("lstm", 1), ("gru", 1), ("mut1", 2), ("nas", 1)])
def test_stages_are_cut_at_matmuls(name, stages):
    """LSTM and GRU (reset after the matmul): one kernel per step; MUT1's r * h feeds a matmul: two."""
    program = CellProgram(get_cell(name), 4, 4)
    assert len(FusedPlan(program.variables).stages) == stages


def test_fused_source_is_shared_between_cells_of_one_structure(interpreted):
    a = FusedProgram(CellProgram(get_cell("lstm"), 4, 8).load())
    b = FusedProgram(CellProgram(get_cell("lstm"), 4, 8).load())
    assert a.source == b.source and a.step is b.step


def test_fused_on_cpu_without_interpreter_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cell = CompiledCell(get_cell("lstm"), 4, 4, pointwise="fused")
    with pytest.raises(CellsearchError, match="needs Triton on a CUDA device"):
        cell(torch.randn(2, 2, 4, requires_grad=True))


def test_auto_stays_eager_on_cpu(interpreted):
    cell = CompiledCell(get_cell("lstm"), 4, 4)
    cell(torch.randn(2, 2, 4, requires_grad=True))[0].sum().backward()
    assert cell.program.fused is None


def test_unknown_pointwise_choice():
    with pytest.raises(ValueError, match="pointwise must be one of"):
        CompiledCell(get_cell("lstm"), 4, 4, pointwise="triton")


# ---------------------------------------------------------------------------------------- on a GPU
def _train_grads(cell, x, states):
    x = x.clone().requires_grad_()
    states = tuple(s.clone().requires_grad_() for s in states)
    out, fin = cell(x, states)
    loss = (out * out.detach().sin()).sum() + sum((f * f).sum() for f in fin)
    return out.detach(), torch.autograd.grad(loss, [x, *states, *cell.params.parameters()])


@cuda
@pytest.mark.parametrize("name", ["lstm", "gru", "mut1", "vanilla", "nas"])
def test_cuda_fused_and_graphed_match_eager(name):
    """Fused kernels compiled for the GPU, replayed as CUDA graphs, against the eager loop (float64)."""
    torch.manual_seed(0)
    graph = get_cell(name)
    eager = CompiledCell(graph, 8, 8, pointwise="eager", cuda_graphs=False).double().cuda()
    fast = CompiledCell(graph, 8, 8, params=eager.params).double().cuda()
    for step in range(3):  # the first call captures, later ones replay with new values
        x = torch.randn(5, 3, 8, dtype=torch.float64, device="cuda")
        states = tuple(torch.randn(3, 8, dtype=torch.float64, device="cuda") for _ in graph.states)
        out_e, g_e = _train_grads(eager, x, states)
        out_f, g_f = _train_grads(fast, x, states)
        torch.testing.assert_close(out_f, out_e, atol=1e-10, rtol=1e-10)
        for a, b in zip(g_f, g_e):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    cache = fast.program.fused.cuda_graph_cache
    assert cache.loops and not cache.disabled


@cuda
def test_cuda_graphs_fall_back_when_shapes_change_and_two_forwards_overlap():
    torch.manual_seed(0)
    graph = get_cell("lstm")
    eager = CompiledCell(graph, 8, 8, pointwise="eager", cuda_graphs=False).cuda()
    fast = CompiledCell(graph, 8, 8, params=eager.params).cuda()
    for T in (3, 4, 5, 3):
        x = torch.randn(T, 2, 8, device="cuda")
        states = (torch.zeros(2, 8, device="cuda"),) * 2
        torch.testing.assert_close(_train_grads(fast, x, states)[1][0], _train_grads(eager, x, states)[1][0],
                                   atol=1e-5, rtol=1e-4)
    # two forwards before their backwards: each keeps its own captured values
    x1, x2 = torch.randn(3, 2, 8, device="cuda"), torch.randn(3, 2, 8, device="cuda")
    o1, _ = fast(x1.requires_grad_())
    o2, _ = fast(x2.requires_grad_())
    g1 = torch.autograd.grad(o1.sum(), x1)[0]
    g2 = torch.autograd.grad(o2.sum(), x2)[0]
    e1 = torch.autograd.grad(eager(x1)[0].sum(), x1)[0]
    e2 = torch.autograd.grad(eager(x2)[0].sum(), x2)[0]
    torch.testing.assert_close(g1, e1, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(g2, e2, atol=1e-5, rtol=1e-4)


@cuda
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=cells(), seed=st.integers(0, 3))
def test_cuda_random_cells_match_cpu(graph, seed):
    """Random cells: the GPU path (fused kernels, CUDA graphs) against the CPU's eager loop, float64."""
    torch.manual_seed(seed)
    cpu = CompiledCell(graph, 4, 4, 4, pointwise="eager").double()
    gpu = CompiledCell(graph, 4, 4, 4).double().cuda()
    gpu.params.load_state_dict(cpu.params.state_dict())
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    states = tuple(torch.randn(2, 4, dtype=torch.float64) for _ in graph.states)
    statics = tuple(torch.randn(2, 4, dtype=torch.float64) for _ in graph.static)
    results = []
    for cell, device in ((cpu, "cpu"), (gpu, "cuda")):
        xx = x.to(device).requires_grad_()
        ss = tuple(s.to(device).requires_grad_() for s in states)
        out, fin = cell(xx, ss, tuple(s.to(device) for s in statics))
        if device == "cpu" and not all(t.detach().isfinite().all() and t.detach().abs().max().item() <= 1e6
                                       for t in (out, *fin)):  # (exp(exp(...)) overflows: inf - inf is NaN)
            from hypothesis import reject

            reject()
        loss = (out * out.detach().cos()).sum() + sum((f * f).sum() for f in fin)
        grads = torch.autograd.grad(loss, [xx, *ss, *cell.params.parameters()], allow_unused=True)
        results.append([out.detach().cpu(), *(None if g is None else g.cpu() for g in grads)])
    for a, b in zip(*results):
        if a is None or b is None:
            assert (a is None or not a.abs().any()) and (b is None or not b.abs().any())
        else:
            torch.testing.assert_close(b, a, atol=1e-8, rtol=1e-8)


def _compile_for_gpu(program: FusedProgram, dtype: str = "fp32") -> int:
    """Compile every kernel of ``program`` to PTX for an H100/H200 (sm_90), offline: no GPU needed."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    n = 0
    for kernel in program.step.__globals__.values():
        if isinstance(kernel, triton.runtime.jit.JITFunction):
            sig = {p: "constexpr" if p == "BLOCK" else (f"*{dtype}" if p[0] == "p" and p[1:].isdigit() else "i32")
                   for p in kernel.arg_names}
            compiled = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs={"BLOCK": 1024}),
                                      target=GPUTarget("cuda", 90, 32))
            assert ".entry" in compiled.asm["ptx"]
            n += 1
    return n


@pytest.mark.parametrize("name,dtype", [("lstm", "fp32"), ("gru", "fp32"), ("mut1", "fp32"), ("nas", "fp64"),
                                        ("chained_groups", "fp32"), ("static_condition", "fp64")])
def test_kernels_compile_for_the_gpu(monkeypatch, name, dtype):
    """What the interpreter cannot show: the kernels as a GPU build compiles them (libdevice tanh, the
    type checks of Triton's code generator)."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    graph = loads_cell(CELLS[name]) if name in CELLS else get_cell(name)
    program = FusedProgram(CellProgram(graph, 4, 4, 4).load())
    assert _compile_for_gpu(program, dtype) == 2 * len(FusedPlan(program.variables).stages)


@pytest.mark.parametrize("name", builtin_names(memory=True))
def test_memory_cells_run_their_eager_steps(interpreted, name):
    """The fused kernels are pointwise: a cell that attends or keeps a memory runs the generated eager code under
    "auto", and asking for "fused" is a one-line error."""
    graph = get_cell(name)
    assert_same(graph, 6, 6, T=4, B=3, pointwise="auto", tol=1e-10)
    cell = CompiledCell(graph, 4, 4, pointwise="fused")
    x = torch.randn(3, 2, 4, requires_grad=True)
    if not CellProgram(graph, 4, 4).schedule.recurrent_states:  # (memn2n: one step, no loop to fuse)
        return
    with pytest.raises(CellsearchError, match="does not support attend"):
        cell(x, None, None, tuple(torch.randn(2, 3, 4) for _ in graph.memory))

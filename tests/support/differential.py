"""The differential check of the compiler: a compiled cell against the reference interpreter.

``assert_same`` runs both on the same random inputs and compares outputs, final states and every
gradient; ``CELLS`` are small cells with structures the code generator treats specially (a
static condition, hoisted nodes, chained groups, constants, elementwise inputs, two inputs).
"""

from __future__ import annotations

import torch

from cellsearch.compile import CompiledCell, InterpretedCell
from cellsearch.compile.attention import Memory


def random_states(graph, B, hidden_size, *, rows=3, generator=None, dtype=torch.float64, requires_grad=False):
    """A random state tuple: (B, H) normal vectors, (B, rows, H) normal memory states and (B, rows)
    weights states uniform in [0, 1) (weights are never negative: sharpen raises them to a power)."""
    def one(s):
        kind = graph.state_kind(s)
        if kind == "weights":
            return torch.rand(B, rows, generator=generator, dtype=dtype, requires_grad=requires_grad)
        shape = (B, rows, hidden_size) if kind == "matrix" else (B, hidden_size)
        return torch.randn(*shape, generator=generator, dtype=dtype, requires_grad=requires_grad)

    return tuple(one(s) for s in graph.states)


def assert_same(graph, input_size, hidden_size, *, T=5, B=3, static_size=None, mode="fused", seed=0, tol=1e-5,
                stable_only=False, pointwise="auto"):
    """Compiled and interpreted modules agree on outputs, final states and all gradients.

    ``stable_only`` (for random cells): reject (hypothesis) cells whose values blow up past 1e6 —
    e.g. h = (…)² squares its state every step — where two correct evaluation orders (blend as
    lerp vs z·a + (1−z)·b) legitimately differ by more than any fixed tolerance.
    """
    torch.manual_seed(seed)
    compiled = CompiledCell(graph, input_size, hidden_size, static_size, mode=mode, pointwise=pointwise)
    interp = InterpretedCell(graph, input_size, hidden_size, static_size, params=compiled.params)
    x = torch.randn(T, B, input_size, dtype=torch.float64, requires_grad=True)
    compiled.double()
    states = random_states(graph, B, hidden_size, requires_grad=True)  # (memory states: 3 rows)
    statics = tuple(torch.randn(B, static_size or hidden_size, dtype=torch.float64, requires_grad=True)
                    for _ in graph.static)
    # memories: 4 rows, the last sequence's last row padding
    mems = tuple(torch.randn(B, 4, hidden_size, dtype=torch.float64, requires_grad=True) for _ in graph.memory)
    mask = torch.ones(B, 4, dtype=torch.bool)
    mask[-1, -1] = False
    memory = tuple(Memory(m, mask) for m in mems)
    out_c, fin_c = compiled(x, states, statics, memory)
    out_i, fin_i = interp(x, states, statics, memory)
    if stable_only and not all(t.detach().isfinite().all() and t.detach().abs().max().item() <= 1e6
                               for t in (out_i, *fin_i)):  # (exp(exp(...)) overflows to inf, inf - inf is NaN)
        from hypothesis import reject

        reject()
    torch.testing.assert_close(out_c, out_i, atol=tol, rtol=tol)
    for a, b in zip(fin_c, fin_i):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    # a random linear functional of every output, so each gets its own gradient
    w_out = torch.randn_like(out_c)
    w_fin = [torch.randn_like(f) for f in fin_c]

    def loss(out, fin):
        return (out * w_out).sum() + sum((f * w).sum() for f, w in zip(fin, w_fin))

    wrt = [x, *states, *statics, *mems, *compiled.params.parameters()]
    g_c = torch.autograd.grad(loss(out_c, fin_c), wrt, allow_unused=True)
    g_i = torch.autograd.grad(loss(out_i, fin_i), wrt, allow_unused=True)
    for a, b in zip(g_c, g_i):
        if a is None or b is None:
            assert (a is None or not a.abs().any()) and (b is None or not b.abs().any())
        else:
            torch.testing.assert_close(a, b, atol=tol, rtol=tol)


CELLS = {
    "static_condition": """
name: cond
inputs: [x]
static: [y]
states: [h]
nodes:
  g: sigmoid(linear(y))
  h: g * tanh(linear(x, h_prev, y)) + one_minus(g) * h_prev + y
""",
    "hoisted_state": """
name: hoisted
inputs: [x]
states: [h, m]
output: h
nodes:
  m: tanh(linear(x))
  h: tanh(linear(h_prev, m_prev) + m)
""",
    "hoisted_output": """
name: hoisted_out
inputs: [x]
states: [h, c]
output: h
nodes:
  h: sigmoid(linear(x)) * 2
  c: c_prev * 0.5 + tanh(linear(x, c_prev, h_prev))
""",
    "chained_groups": """
name: chain
inputs: [x]
states: [h]
nodes:
  a: tanh(linear(x, h_prev))
  b: relu(linear(a, h_prev, a))
  c: leaky_relu(linear(b), slope=0.2)
  h: blend(sigmoid(linear(c, x)), diag(a), -c) - 0.5 * -b
""",
    "constants_everywhere": """
name: consts
inputs: [x]
states: [h]
nodes:
  h: 1 - tanh(linear(h_prev, bias=false) * 2) * -0.5 + identity(h_prev) * 0.25 + linear(x)
""",
    "input_elementwise": """
name: raw
inputs: [x]
states: [h, c]
output: h
nodes:
  c: x * c_prev + tanh(x + linear(h_prev))
  h: c * sigmoid(x)
""",
    "two_inputs": """
name: two
inputs: [x, u]
states: [h]
nodes:
  h: tanh(linear(x, u, h_prev) + diag(h_prev))
""",
}

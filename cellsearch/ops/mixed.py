"""The mixed op: DARTS's continuous relaxation of a choice, Σ_k softmax(α)_k · a_k.

``mixed(a_1, ..., a_K)`` weighs its K arguments by the softmax of a learned vector α of shape
(K,), the node's architecture weights (Liu et al. 2019); its parameter is ``<node>__alpha``,
drawn uniformly like every weight (near 0: every argument weighed about 1/K; DARTS sets its own).
Like ``diag``'s scale, α is a per-step constant of the time loop whose gradient the step returns
(summed over the sequence by the runtime): for the argument gradients d a_k = s_k · g, and for α
dα_k = s_k (⟨g, a_k⟩ − Σ_m s_m ⟨g, a_m⟩), the inner products summed over batch and hidden.

The fused Triton kernels are elementwise over (batch, hidden) and α's gradient is a reduction
over both, so the op has no Triton rules: a cell that runs it inside its time loop runs the
eager generated step (``compile/pointwise.py`` refuses ``pointwise='fused'`` for it).
The expressions index the last axis of α's softmax, so a population (the α of its P members
stacked, (P, 1, K)) runs the same generated code.
"""

from __future__ import annotations

import torch

from cellsearch.ops.base import Op, paren


def alpha_name(node: str) -> str:
    """The (K,) architecture weights of a mixed node."""
    return f"{node}__alpha"


def _weighted(args: list[str], weights: str) -> str:
    """Σ_k w_k · a_k over the last axis of a stack of the arguments, broadcast to one shape (a static
    input is (B, H) where a per-step one is (T, B, H)); ``weights``: the softmax."""
    return f"(torch.stack(torch.broadcast_tensors({', '.join(args)}), -1) * {weights}.unsqueeze(-2)).sum(-1)"


class Mixed(Op):
    """Its α is read like a diag's scale (``has_scale``: ``param`` in the generated forward,
    ``bw.scale_var``/``bw.scale_grad`` in the backward)."""

    has_scale = True
    export_param_phase = 0

    def param_name(self, node: str) -> str:
        return alpha_name(node)

    def interpret(self, node, args, params, trace):
        s = torch.softmax(getattr(params, alpha_name(node.name)), -1)
        out = None
        for k, a in enumerate(args):
            term = s[k] * a
            out = term if out is None else out + term
        return out

    def forward_expr(self, v, node, a, param=None):
        if any(v.is_const(x) for x in node.args):  # a number among them: no stack, a sum of terms
            return " + ".join(f"torch.softmax({param}, -1)[..., {k}:{k + 1}] * {t}" for k, t in enumerate(a))
        return _weighted(a, f"torch.softmax({param}, -1)")

    def backward(self, bw, node, d):
        s = bw.fresh(f"s_{node.name}")
        bw.line(f"{s} = torch.softmax({bw.scale_var(node.name)}, -1)")
        for k, arg in enumerate(node.args):
            bw.grad(arg, f"{d} * {s}[..., {k}:{k + 1}]")
        inner = bw.fresh(f"ga_{node.name}")  # ⟨g, a_k⟩ over hidden, per batch row (and member)
        terms = ", ".join(f"({d} * {bw.use(arg)}).sum(-1)" for arg in node.args)
        bw.line(f"{inner} = torch.stack(({terms},), -1)")
        bw.scale_grad(node.name, f"{s} * ({inner} - ({s} * {inner}).sum(-1, keepdim=True))")

    def export_expr(self, w, node, args):
        s = f"torch.softmax(self.{alpha_name(node.name)}, -1)"
        return " + ".join(f"{s}[{k}] * {paren(t, p <= 2)}" for k, (t, p) in enumerate(args)), 1

    def parameters(self, node, sizes, hidden):
        return [(alpha_name(node.name), (len(node.args),))]

    def export_param_lines(self, node, size_expr):
        return [f"self.{alpha_name(node.name)} = nn.Parameter(torch.empty({len(node.args)}))"
                "  # architecture weights"]


MIXED = Mixed("mixed", "elementwise", 2, None, doc="Σ_k softmax(α)_k · a_k with learned architecture "
              "weights α (DARTS's relaxed choice)")

OPS = (MIXED,)

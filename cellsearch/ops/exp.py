"""The exp op: e^a, elementwise; its value is always positive (log and sqrt may read it)."""

from __future__ import annotations

import torch

from cellsearch.ops.base import POSITIVE, Op


class Exp(Op):
    """Its derivative is its own value, so the backward reads the output the step saved."""

    triton = True

    def result_range(self, node, r):
        return POSITIVE

    def interpret(self, node, args, params, trace):
        return torch.exp(args[0])

    def forward_expr(self, v, node, a, param=None):
        return f"torch.exp({a[0]})"

    def backward(self, bw, node, d):
        bw.grad(node.args[0], f"{d} * {bw.use(node.name)}")

    def triton_forward(self, k, node, a):
        return f"tl.exp({a[0]})"

    def triton_backward(self, k, node, a, y, g, add):
        add(0, f"{g} * {y}")

    def export_expr(self, w, node, args):
        return f"torch.exp({args[0][0]})", 9


EXP = Exp("exp", "function", 1, 1, doc="e^a (positive: log and sqrt may read it)")

OPS = (EXP,)

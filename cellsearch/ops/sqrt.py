"""The sqrt op: the square root, of an argument known to be positive only.

Its domain is the positive values, not the non-negative ones: the derivative 1 / (2 sqrt(a)) is
infinite at 0, and relu(...) gives exact zeros, so sqrt(relu(...) * relu(...)) would make
inf * 0 = NaN gradients in training. Checked when a cell is validated (see ``log.py``).
"""

from __future__ import annotations

import torch

from cellsearch.ops.base import POSITIVE, Op


class Sqrt(Op):
    """Its derivative is 1 / (2 sqrt(a)): the backward reads the output the step saved."""

    triton = True

    def result_range(self, node, r):
        return POSITIVE

    def interpret(self, node, args, params, trace):
        return torch.sqrt(args[0])

    def forward_expr(self, v, node, a, param=None):
        return f"torch.sqrt({a[0]})"

    def backward(self, bw, node, d):
        bw.grad(node.args[0], f"{d} / (2 * {bw.use(node.name)})")

    def triton_forward(self, k, node, a):
        return f"tl.sqrt({a[0]})"

    def triton_backward(self, k, node, a, y, g, add):
        add(0, f"{g} / (2.0 * {y})")

    def export_expr(self, w, node, args):
        return f"torch.sqrt({args[0][0]})", 9


SQRT = Sqrt("sqrt", "function", 1, 1, domain=POSITIVE,
            doc="the square root of a (a must be known positive: exp, softplus, sigmoid, ...)")

OPS = (SQRT,)

"""The log op: the natural logarithm, of an argument known to be positive only.

A cell is checked when it is validated: ``log(a)`` needs ``a`` to be the output of an op whose
value is always positive (exp, softplus, sigmoid, a positive constant, or sums and products of
such; see ``Op.result_range``), so a cell can never take the log of zero or of a negative number.
A previous state is not known positive (a state starts at zero).
"""

from __future__ import annotations

import torch

from cellsearch.ops.base import POSITIVE, Op


class Log(Op):
    triton = True

    def interpret(self, node, args, params, trace):
        return torch.log(args[0])

    def forward_expr(self, v, node, a, param=None):
        return f"torch.log({a[0]})"

    def backward(self, bw, node, d):
        x = node.args[0]
        bw.grad(x, f"{d} / {bw.use(x)}")

    def triton_forward(self, k, node, a):
        return f"tl.log({a[0]})"

    def triton_backward(self, k, node, a, y, g, add):
        add(0, f"{g} / {a[0]}")

    def export_expr(self, w, node, args):
        return f"torch.log({args[0][0]})", 9


LOG = Log("log", "function", 1, 1, domain=POSITIVE,
          doc="the natural logarithm of a (a must be known positive: exp, softplus, sigmoid, ...)")

OPS = (LOG,)

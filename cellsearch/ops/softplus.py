"""The softplus op: log(1 + e^a), a smooth relu; its value is positive (log and sqrt may read it).

As torch's ``F.softplus`` (beta 1, threshold 20): above 20 it is a itself. In a Triton kernel
log(1 + e^a) loses e^a next to 1 for very negative a, so there it is e^a (1 - e^a / 2), the
start of log1p's series, below -9 (relative error under 1e-8), and stays positive.
"""

from __future__ import annotations

import torch.nn.functional as F

from cellsearch.ops.base import POSITIVE, Op

THRESHOLD = 20.0  # torch's default: above it softplus(a) is a


class Softplus(Op):
    triton = True

    def result_range(self, node, r):
        return POSITIVE

    def interpret(self, node, args, params, trace):
        return F.softplus(args[0])

    def forward_expr(self, v, node, a, param=None):
        return f"F.softplus({a[0]})"

    def backward(self, bw, node, d):
        x = node.args[0]
        bw.grad(x, f"aten.softplus_backward({d}, {bw.use(x)}, 1, {THRESHOLD!r})")

    def triton_forward(self, k, node, a):
        x = a[0]
        return (f"tl.where({x} > {THRESHOLD!r}, {x}, tl.where({x} < -9.0, tl.exp({x}) * (1.0 - 0.5 * tl.exp({x})), "
                f"tl.log(1.0 + tl.exp({x}))))")

    def triton_backward(self, k, node, a, y, g, add):
        x = a[0]
        add(0, f"tl.where({x} > {THRESHOLD!r}, {g}, {g} / (1.0 + tl.exp(-{x})))")

    def export_expr(self, w, node, args):
        return f"F.softplus({args[0][0]})", 9


SOFTPLUS = Softplus("softplus", "function", 1, 1, doc="log(1 + e^a), a smooth relu (positive: log and sqrt may read it)")

OPS = (SOFTPLUS,)

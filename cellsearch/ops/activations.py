"""The activations: tanh, sigmoid, relu, leaky_relu and identity (one vector to one vector)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cellsearch.ops.base import NONNEGATIVE, POSITIVE, AttrSpec, Op


class Activation(Op):
    """A torch activation ``torch.<name>``; the fusable ones (``fuses_after_matmul``) run as one
    call over the matmul columns that feed them, with their backward from the output value."""

    triton = True

    def __init__(self, name: str, doc: str, *, fuses: bool, triton_expr: str, triton_grad: str,
                 result: str | None = None, **kw):
        super().__init__(name, "activation", 1, 1, doc=doc, space_activation=True, **kw)
        self.fuses_after_matmul = fuses
        self._triton = triton_expr  # over {x}
        self._triton_grad = triton_grad  # over {g} (the gradient) and {y} (the output)
        self._result = result

    def result_range(self, node, r):
        return self._result

    def interpret(self, node, args, params, trace):
        return getattr(torch, self.name)(args[0])

    def run_expr(self, x: str) -> str:
        """The generated call on ``x`` (a whole run of matmul columns, or one argument)."""
        return f"torch.{self.name}({x})"

    def forward_expr(self, v, node, a, param=None):
        return self.run_expr(a[0])

    def act_backward(self, grad: str, out_value: str, out: str | None = None) -> str:
        """Its backward from its output value (optionally written into ``out``)."""
        dest = f", grad_input={out}" if out else ""
        return f"aten.{self.name}_backward({grad}, {out_value}{dest})"

    def backward(self, bw, node, d):
        bw.grad(node.args[0], self.act_backward(d, bw.use(node.name)))

    def triton_forward(self, k, node, a):
        return self._triton.format(x=a[0])

    def triton_backward(self, k, node, a, y, g, add):
        add(0, self._triton_grad.format(g=g, y=y))

    def export_expr(self, w, node, args):
        return f"torch.{self.name}({args[0][0]})", 9


class Tanh(Activation):
    def triton_forward(self, k, node, a):
        """tanh in a kernel: libdevice's on a GPU; the interpreter has no libdevice, so there a formula
        exact at both ends (exp overflows to inf: 1 - 0; underflows to 0: 1 - 2). Written inline, like
        sigmoid, since a kernel calling another generated jit function fails to compile (its module is
        unnamed) and the interpreter cannot run triton.language's own jit helpers (tl.sigmoid) unless
        TRITON_INTERPRET was set before triton was imported."""
        x = a[0]
        return f"(1.0 - 2.0 / (tl.exp(2.0 * {x}) + 1.0))" if k.interpreting else f"libdevice.tanh({x})"


class Relu(Activation):
    def act_backward(self, grad, out_value, out=None):
        dest = f", grad_input={out}" if out else ""
        return f"aten.threshold_backward({grad}, {out_value}, 0{dest})"


class LeakyRelu(Op):
    triton = True

    def interpret(self, node, args, params, trace):
        return F.leaky_relu(args[0], node.attr("slope"))

    def forward_expr(self, v, node, a, param=None):
        return f"F.leaky_relu({a[0]}, {node.attr('slope')!r})"

    def backward(self, bw, node, d):
        x = node.args[0]
        bw.grad(x, f"aten.leaky_relu_backward({d}, {bw.use(x)}, {node.attr('slope')!r}, False)")

    def triton_forward(self, k, node, a):
        return f"tl.where({a[0]} > 0, {a[0]}, {a[0]} * {node.attr('slope')!r})"

    def triton_backward(self, k, node, a, y, g, add):
        add(0, f"tl.where({a[0]} > 0, {g}, {g} * {node.attr('slope')!r})")

    def export_expr(self, w, node, args):
        return f"F.leaky_relu({args[0][0]}, {float(node.attr('slope'))!r})", 9


class Identity(Op):
    triton = True

    def result_range(self, node, r):
        return r[0]

    def interpret(self, node, args, params, trace):
        return args[0]

    def forward_expr(self, v, node, a, param=None):
        return a[0]

    def backward(self, bw, node, d):
        bw.grad(node.args[0], d, simple=True)

    def triton_forward(self, k, node, a):
        return a[0]

    def triton_backward(self, k, node, a, y, g, add):
        add(0, g)

    def export_expr(self, w, node, args):
        return args[0]


TANH = Tanh("tanh", "tanh(a)", fuses=True, triton_expr="", triton_grad="{g} * (1.0 - {y} * {y})")
SIGMOID = Activation("sigmoid", "logistic sigmoid", fuses=True, triton_expr="1.0 / (1.0 + tl.exp(-{x}))",
                     triton_grad="{g} * {y} * (1.0 - {y})", result=POSITIVE)
RELU = Relu("relu", "max(a, 0)", fuses=True, triton_expr="tl.where({x} < 0, 0.0, {x})",  # NaN passes, as torch.relu
            triton_grad="tl.where({y} <= 0, 0.0, {g})", result=NONNEGATIVE)
LEAKY_RELU = LeakyRelu("leaky_relu", "activation", 1, 1, attrs={
    "slope": AttrSpec(float, 0.01, "slope for negative inputs"),
}, doc="a if a > 0 else slope * a", space_activation=True)
IDENTITY = Identity("identity", "activation", 1, 1, doc="a", space_activation=True)

OPS = (TANH, SIGMOID, RELU, LEAKY_RELU, IDENTITY)

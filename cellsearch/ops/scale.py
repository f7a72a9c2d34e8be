"""The diag op: p * a with a learned elementwise scale p (peepholes)."""

from __future__ import annotations

from cellsearch.ops.base import AttrSpec, Op, paren


def scale_name(node: str) -> str:
    """The (hidden,) scale of a diag node."""
    return f"{node}__p"


class Diag(Op):
    """Its scale is a parameter the generated code reads as ``param`` (``P.<node>__p`` in the
    prologue, a per-step constant in the step) and whose gradient the step returns."""

    has_scale = True
    triton = True
    export_param_phase = 0

    def param_name(self, node: str) -> str:
        return scale_name(node)

    def interpret(self, node, args, params, trace):
        return getattr(params, scale_name(node.name)) * args[0]

    def forward_expr(self, v, node, a, param=None):
        return f"{param} * {a[0]}"

    def backward(self, bw, node, d):
        bw.grad(node.args[0], f"{d} * {bw.scale_var(node.name)}")
        bw.scale_grad(node.name, f"{d} * {bw.use(node.args[0])}")

    def triton_forward(self, k, node, a):
        return f"{k.scale(node.name)} * {a[0]}"

    def triton_backward(self, k, node, a, y, g, add):
        add(0, f"{g} * {k.scale(node.name)}")
        k.scale_grad(node.name, f"{g} * {a[0]}")

    def export_expr(self, w, node, args):
        t, p = args[0]
        return f"self.{scale_name(node.name)} * {paren(t, p <= 2)}", 2

    def parameters(self, node, sizes, hidden):
        return [(scale_name(node.name), (hidden,))]

    def init_parameters(self, node, get):
        if node.attr("init") is not None:
            get(scale_name(node.name)).fill_(node.attr("init"))

    def export_param_lines(self, node, size_expr):
        return [f"self.{scale_name(node.name)} = nn.Parameter(torch.empty(hidden_size))"]

    def export_reset_lines(self, node):
        if node.attr("init") is None:
            return []
        return [f"self.{scale_name(node.name)}.fill_({float(node.attr('init'))!r})  # init"]


DIAG = Diag("diag", "scale", 1, 1, attrs={
    "init": AttrSpec(float, None, "initial value of every scale (default: uniform like the weights)"),
}, doc="p * a with a learned elementwise scale p (peepholes)")

OPS = (DIAG,)

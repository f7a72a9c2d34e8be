"""The linear op: W_1 a_1 + W_2 a_2 + ... + b, with weights of its own at each occurrence.

Its value is a sum of matmuls, so the compiler does not emit it node by node: it groups the
linear nodes that read the same arguments into fused matmuls (``compile/schedule.py``) and
computes their weight gradients after the loop. What is written here is what is particular to
the op: its parameters and their names, the interpreter's rule and the exported expression.
"""

from __future__ import annotations

import torch.nn.functional as F

from cellsearch.ops.base import AttrSpec, Op


def weight_name(node: str, k: int) -> str:
    """The weight a linear node applies to its k-th argument."""
    return f"{node}__w{k}"


def bias_name(node: str) -> str:
    """The parameter name of a linear node's bias."""
    return f"{node}__b"


class Linear(Op):
    is_matmul = True
    export_param_phase = 0

    def interpret(self, node, args, params, trace):
        out = None
        for k, a in enumerate(args):
            term = F.linear(a, getattr(params, weight_name(node.name, k)))
            out = term if out is None else out + term
        if node.attr("bias"):
            out = out + getattr(params, bias_name(node.name))
        return out

    def backward(self, bw, node, d):
        pass  # gradients of linear nodes are gathered per group

    def export_expr(self, w, node, args):
        terms = [f"F.linear({t}, self.{weight_name(node.name, k)})" for k, (t, _) in enumerate(args)]
        if node.attr("bias"):
            terms.append(f"self.{bias_name(node.name)}")
        return " + ".join(terms), (9 if len(terms) == 1 else 1)

    def parameters(self, node, sizes, hidden):
        out = [(weight_name(node.name, k), (hidden, sizes.get(a, hidden))) for k, a in enumerate(node.args)]
        if node.attr("bias"):
            out.append((bias_name(node.name), (hidden,)))
        return out

    def init_parameters(self, node, get):
        if node.attr("bias") and node.attr("bias_init") is not None:
            get(bias_name(node.name)).fill_(node.attr("bias_init"))
        a = node.attr("diag_init")
        if a is not None:
            for k in range(len(node.args)):
                w = get(weight_name(node.name, k))
                w.mul_(0.1)  # "initialised small"
                w.diagonal().add_(a)

    def export_param_lines(self, node, size_expr):
        lines = [f"self.{weight_name(node.name, k)} = nn.Parameter(torch.empty(hidden_size, "
                 f"{size_expr(a)}))  # for {a}" for k, a in enumerate(node.args)]
        if node.attr("bias"):
            lines.append(f"self.{bias_name(node.name)} = nn.Parameter(torch.empty(hidden_size))")
        return lines

    def export_reset_lines(self, node):
        lines = []
        if node.attr("bias") and node.attr("bias_init") is not None:
            lines.append(f"self.{bias_name(node.name)}.fill_({float(node.attr('bias_init'))!r})  # bias_init")
        a = node.attr("diag_init")
        if a is not None:
            for k in range(len(node.args)):
                lines.append(f"self.{weight_name(node.name, k)}.mul_(0.1).diagonal().add_({float(a)!r})"
                             "  # diag_init")
        return lines


LINEAR = Linear("linear", "linear", 1, None, commutative=True, attrs={
    "bias": AttrSpec(bool, True, "add a learned bias"),
    "bias_init": AttrSpec(float, None, "initial value of the bias, e.g. 1.0 for a forget gate "
                          "(default: uniform like the weights)"),
    "diag_init": AttrSpec(float, None, "Jozefowicz's Linear(a, x): square weights initialised "
                          "small plus this value on the diagonal (hidden-sized arguments only)"),
}, doc="W_1 a_1 + W_2 a_2 + ... + b, with its own weights at each occurrence")

OPS = (LINEAR,)

"""The const op: a number broadcast to hidden size, inlined wherever it is read."""

from __future__ import annotations

from cellsearch.ops.base import NONNEGATIVE, POSITIVE, AttrSpec, Op


class Const(Op):
    is_literal = True

    def value(self, node) -> float:
        return node.attr("value")

    def result_range(self, node, r):
        v = node.attr("value")
        return POSITIVE if v > 0 else NONNEGATIVE if v == 0 else None

    def interpret(self, node, args, params, trace):
        return node.attr("value")


CONST = Const("const", "const", 0, 0, attrs={
    "value": AttrSpec(float, 0.0, "the constant"),
}, doc="a numeric constant broadcast to hidden size", call=False)

OPS = (CONST,)

"""The arithmetic ops: add, sub, mul, neg, one_minus and blend (operators on vectors)."""

from __future__ import annotations

from cellsearch.ops.base import NONNEGATIVE, POSITIVE, Elementwise, Op, paren


def _binary_export(sym: str, p: int):
    def export(left: tuple[str, int], right: tuple[str, int]) -> tuple[str, int]:
        (lt, lp), (rt, rp) = left, right
        return f"{paren(lt, lp < p)} {sym} {paren(rt, rp <= p)}", p
    return export


class _Sum(Elementwise):
    def result_range(self, node, r):
        if all(x in (POSITIVE, NONNEGATIVE) for x in r):
            return POSITIVE if POSITIVE in r else NONNEGATIVE
        return None


class _Product(Elementwise):
    def result_range(self, node, r):
        if all(x == POSITIVE for x in r):
            return POSITIVE
        if all(x in (POSITIVE, NONNEGATIVE) for x in r):
            return NONNEGATIVE
        return None


ADD = _Sum("add", 2, "{0} + {1}", commutative=True, infix="+", call=False, doc="a + b",
           interpret=lambda a, b: a + b, grads=((1, "{d}", True), (1, "{d}", True)),
           export=_binary_export("+", 1))
ADD.sum_fold = True
SUB = Elementwise("sub", 2, "{0} - {1}", infix="-", call=False, doc="a - b",
                  interpret=lambda a, b: a - b, grads=((1, "{d}", True), (-1, "{d}", True)),
                  export=_binary_export("-", 1))
MUL = _Product("mul", 2, "{0} * {1}", commutative=True, infix="*", call=False, doc="a * b (elementwise)",
               interpret=lambda a, b: a * b, grads=((1, "{d} * {1}", False), (1, "{d} * {0}", False)),
               export=_binary_export("*", 2))
MUL.product_fold = True


def _neg_export(a: tuple[str, int]) -> tuple[str, int]:
    t, p = a
    return "-" + paren(t, p <= 3), 3


def _one_minus_export(a: tuple[str, int]) -> tuple[str, int]:
    t, p = a
    return f"1 - {paren(t, p <= 1)}", 1


NEG = Elementwise("neg", 1, "-{0}", call=False, doc="-a", interpret=lambda a: -a,
                  grads=((-1, "{d}", True),), export=_neg_export)
ONE_MINUS = Elementwise("one_minus", 1, "1 - {0}", doc="1 - a", interpret=lambda a: 1 - a,
                        grads=((-1, "{d}", True),), export=_one_minus_export)


class Blend(Op):
    """blend(z, a, b) = z * a + (1 - z) * b: a gate choosing between two values."""

    triton = True
    export_reads_twice = (0,)  # z is read twice (z * a + (1 - z) * b): it gets its own line

    def interpret(self, node, args, params, trace):
        z, a, b = args
        return z * a + (1 - z) * b

    def forward_expr(self, v, node, a, param=None):  # as one lerp: b + z * (a - b)
        if v.is_const(node.args[1]) or v.is_const(node.args[2]):
            return f"{a[0]} * {a[1]} + (1 - {a[0]}) * {a[2]}"  # lerp needs tensors there
        return f"torch.lerp({a[2]}, {a[1]}, {a[0]})"

    def backward(self, bw, node, d):
        z, a, b = node.args
        if not bw.is_const(z):
            bw.grad(z, f"{d} * ({bw.use(a)} - {bw.use(b)})")
        t = bw.fresh(f"d_{node.name}_z")
        bw.line(f"{t} = {d} * {bw.use(z)}")
        bw.grad(a, t, simple=True)
        bw.grad(b, f"{d} - {t}")

    def triton_forward(self, k, node, a):
        return f"{a[2]} + {a[0]} * ({a[1]} - {a[2]})"

    def triton_backward(self, k, node, a, y, g, add):
        add(0, f"{g} * ({a[1]} - {a[2]})")
        add(1, f"{g} * {a[0]}")
        add(2, f"{g} * (1.0 - {a[0]})")

    def export_expr(self, w, node, args):
        (zt, zp), (at, ap), (bt, bp) = args
        return (f"{paren(zt, zp < 2)} * {paren(at, ap <= 2)} + (1 - {paren(zt, zp <= 1)}) * "
                f"{paren(bt, bp <= 2)}"), 1


BLEND = Blend("blend", "elementwise", 3, 3, doc="blend(z, a, b) = z * a + (1 - z) * b")

OPS = (ADD, SUB, MUL, NEG, ONE_MINUS, BLEND)

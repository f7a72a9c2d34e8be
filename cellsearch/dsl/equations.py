"""Equations ↔ nodes.

``parse_equation`` reads one right-hand side such as ``f * c_prev + i * tanh(linear(x, h_prev))``
with Python's ``ast`` module and an allow-list of node types (never ``eval``) and returns
the nodes it stands for: the root takes the equation's name, every sub-expression becomes
an ``auto`` node named after the root (``c_mul``, ``c_mul1``...). ``format_equation`` does
the reverse, inlining auto nodes that have a single reader, so the text reads as written.
"""

from __future__ import annotations

import ast
import difflib
from typing import Any, Callable

from cellsearch.dsl.graph import CellGraph, Node, unique_name
from cellsearch.dsl.ops import BINARY_INFIX, CALLABLE_OPS, OPS
from cellsearch.errors import CellError

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul"}
_BOOL_NAMES = {"true": True, "false": False, "True": True, "False": False}
_SPELLED = {"add": "a + b", "sub": "a - b", "mul": "a * b", "neg": "-a", "const": "as a number, e.g. 0.5"}
_INFIX_NAMES = {ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**", ast.MatMult: "@",
                ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>"}


def parse_equation(name: str, text: Any, taken: set[str]) -> list[Node]:
    """Nodes for ``name: text``; ``taken`` holds every explicit name in the cell (updated)."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise CellError(f"an equation must be a string such as 'tanh(linear(x, h_prev))', "
                        f"got {type(text).__name__}", node=name)
    source = str(text).strip()
    if not source:
        raise CellError("empty equation", node=name)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        col = f" at column {exc.offset}" if exc.offset else ""
        raise CellError(f"cannot parse equation '{source}'{col}: {exc.msg}", node=name) from None
    return _Builder(name, source, taken).build(tree.body)


class _Builder:
    def __init__(self, root: str, source: str, taken: set[str]):
        self.root = root
        self.source = source
        self.taken = taken
        self.nodes: list[Node] = []

    def fail(self, msg: str, expr: ast.AST | None = None) -> CellError:
        where = ""
        if expr is not None and hasattr(expr, "col_offset"):
            where = f" (column {expr.col_offset + 1})"
        return CellError(f"in '{self.source}'{where}: {msg}", node=self.root)

    def fresh(self, op: str) -> str:
        return unique_name(f"{self.root}_{op}", self.taken)

    def build(self, expr: ast.AST) -> list[Node]:
        if isinstance(expr, ast.Name) or _is_number(expr):
            # `c: c_prev` or `h: 0` — the node itself is an identity / constant.
            if isinstance(expr, ast.Name):
                self.emit("identity", [self.arg(expr)], {}, name=self.root)
            else:
                self.emit("const", [], {"value": _number(expr)}, name=self.root)
        else:
            self.visit(expr, name=self.root)
        return self.nodes

    def emit(self, op: str, args: list[str], attrs: dict[str, Any], name: str | None = None) -> str:
        auto = name is None
        name = name or self.fresh(op)
        try:
            self.nodes.append(Node.make(name, op, args, attrs, auto=auto))
        except CellError as exc:
            raise self.fail(exc.reason) from None
        return name

    def arg(self, expr: ast.AST) -> str:
        """The name holding the value of a sub-expression (emitting nodes as needed)."""
        if isinstance(expr, ast.Name):
            if expr.id in _BOOL_NAMES:
                raise self.fail(f"'{expr.id}' is only allowed as an attribute value (e.g. bias={expr.id})", expr)
            return expr.id
        if _is_number(expr):
            return self.emit("const", [], {"value": _number(expr)})
        return self.visit(expr)

    def visit(self, expr: ast.AST, name: str | None = None) -> str:
        if isinstance(expr, ast.BinOp):
            op = _BINOPS.get(type(expr.op))
            if op is None:
                sym = _INFIX_NAMES.get(type(expr.op), type(expr.op).__name__)
                raise self.fail(f"operator '{sym}' is not allowed (allowed: + - * and the functions "
                                f"{', '.join(CALLABLE_OPS)})", expr)
            args = [self.arg(expr.left), self.arg(expr.right)]
            return self.emit(op, args, {}, name)
        if isinstance(expr, ast.UnaryOp):
            if isinstance(expr.op, ast.USub):
                if _is_number(expr.operand):
                    return self.emit("const", [], {"value": -_number(expr.operand)}, name)
                return self.emit("neg", [self.arg(expr.operand)], {}, name)
            if isinstance(expr.op, ast.UAdd):
                return self.visit(expr.operand, name) if not isinstance(expr.operand, ast.Name) \
                    else self.emit("identity", [expr.operand.id], {}, name)
            raise self.fail(f"unary operator '{type(expr.op).__name__}' is not allowed", expr)
        if isinstance(expr, ast.Call):
            if not isinstance(expr.func, ast.Name):
                raise self.fail("only plain function calls such as tanh(...) are allowed", expr)
            fn = expr.func.id
            if fn not in CALLABLE_OPS:
                close = difflib.get_close_matches(fn, CALLABLE_OPS, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(CALLABLE_OPS)})"
                if fn in _SPELLED:  # an op that has no function spelling
                    hint = f" ({fn} is written {_SPELLED[fn]})"
                raise self.fail(f"unknown function '{fn}'" + hint, expr)
            spec = OPS[fn]
            if any(isinstance(a, ast.Starred) for a in expr.args):
                raise self.fail("*args is not allowed", expr)
            if any(kw.arg is None for kw in expr.keywords):
                raise self.fail("**kwargs is not allowed", expr)
            n = len(expr.args)
            if n < spec.min_args or (spec.max_args is not None and n > spec.max_args):
                raise self.fail(f"{fn}() takes {spec.arity_text()} argument(s), got {n}", expr)
            attrs = {}
            for kw in expr.keywords:
                if kw.arg in attrs:  # ast.parse accepts f(a=1, a=2); only the compiler rejects it
                    raise self.fail(f"{fn}(): keyword '{kw.arg}' is given twice", expr)
                attrs[kw.arg] = self.literal(kw.value, f"{fn}({kw.arg}=...)")
            args = [self.arg(a) for a in expr.args]
            return self.emit(fn, args, attrs, name)
        if isinstance(expr, ast.Constant):  # numbers never get here: strings, True, None, ...
            raise self.fail(f"the constant {expr.value!r} is not allowed (only numbers such as 1 or 0.5)", expr)
        if isinstance(expr, ast.Name) or _is_number(expr):
            raise self.fail("internal: leaf visited as an operation", expr)  # pragma: no cover
        raise self.fail(f"{_describe(expr)} is not allowed in an equation", expr)

    def literal(self, expr: ast.AST, what: str) -> Any:
        if isinstance(expr, ast.Name) and expr.id in _BOOL_NAMES:
            return _BOOL_NAMES[expr.id]
        if isinstance(expr, ast.Constant) and isinstance(expr.value, bool):
            return expr.value
        if _is_number(expr):
            return _number(expr)
        raise self.fail(f"{what} must be a number or true/false", expr)


def _is_number(expr: ast.AST) -> bool:
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, (ast.USub, ast.UAdd)):
        return _is_number(expr.operand)
    return isinstance(expr, ast.Constant) and isinstance(expr.value, (int, float)) \
        and not isinstance(expr.value, bool)


def _number(expr: ast.AST) -> float:
    if isinstance(expr, ast.UnaryOp):
        v = _number(expr.operand)
        return -v if isinstance(expr.op, ast.USub) else v
    return float(expr.value)  # type: ignore[attr-defined]


def _describe(expr: ast.AST) -> str:
    names = {ast.Attribute: "attribute access (a.b)", ast.Subscript: "indexing (a[i])",
             ast.Lambda: "lambda", ast.Compare: "comparison", ast.BoolOp: "and/or",
             ast.IfExp: "if/else", ast.Constant: "this constant", ast.Tuple: "a tuple", ast.List: "a list"}
    return names.get(type(expr), type(expr).__name__)


# ---------------------------------------------------------------------- printing
_PREC = {"add": 1, "sub": 1, "mul": 2, "neg": 3}


def format_number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def inlined_nodes(graph: CellGraph) -> set[str]:
    """Auto-named nodes with exactly one reader, printed inside their reader's equation."""
    consumers = graph.consumers
    states = set(graph.states)
    return {n.name for n in graph.nodes
            if n.auto and n.name not in states and (n.op == "const" or len(consumers.get(n.name, [])) == 1)}


def format_equation(graph: CellGraph, name: str, inline: set[str] | None = None,
                    rename: Callable[[str], str] | None = None) -> str:
    """The right-hand side of ``name`` as text, inlining the nodes in ``inline``."""
    inline = inlined_nodes(graph) if inline is None else inline
    rename = rename or (lambda s: s)
    node_map = graph.node_map

    def text(ref: str) -> tuple[str, int]:
        if ref in inline and ref in node_map:
            return expr(node_map[ref])
        return rename(ref), 9

    def expr(n: Node) -> tuple[str, int]:
        if n.op == "const":
            v = n.attr("value")
            return format_number(v), (9 if v >= 0 else 3)
        if n.op in BINARY_INFIX:
            p = _PREC[n.op]
            (lt, lp), (rt, rp) = text(n.args[0]), text(n.args[1])
            left = lt if lp >= p else f"({lt})"
            right = rt if rp > p else f"({rt})"
            return f"{left} {BINARY_INFIX[n.op]} {right}", p
        if n.op == "neg":
            t, p = text(n.args[0])
            return ("-" + (t if p > 3 else f"({t})")), 3
        args = [text(a)[0] for a in n.args]
        args += [f"{k}={_format_attr(v)}" for k, v in n.attrs]
        return f"{n.op}({', '.join(args)})", 9

    return expr(node_map[name])[0]


def _format_attr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return format_number(value) if isinstance(value, (int, float)) else repr(value)

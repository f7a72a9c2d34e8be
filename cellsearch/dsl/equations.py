"""Equations ↔ nodes.

``parse_equation`` reads one right-hand side such as ``f * c_prev + i * tanh(linear(x, h_prev))``
with Python's ``ast`` module and an allow-list of node types (never ``eval``) and returns
the nodes it stands for: the root takes the equation's name, every sub-expression becomes
an ``auto`` node named after the root (``c_mul``, ``c_mul1``...). ``format_equation`` does
the reverse, inlining auto nodes that have a single reader, so the text reads as written.

An equation is held to the limits in ``cellsearch.limits`` (length, characters, nesting,
number range) before and after ``ast.parse``, so a hostile one costs milliseconds and gives a
one-line CellError naming the limit; the printer keeps what it writes within them.
"""

from __future__ import annotations

import ast
import difflib
import math
import warnings
from typing import Any, Callable

from cellsearch import limits
from cellsearch.dsl.graph import CellGraph, Node, describe_non_ascii, unique_name
from cellsearch.dsl.ops import BINARY_INFIX, CALLABLE_OPS, OPS
from cellsearch.errors import CellError
from cellsearch.limits import clipped, exceeds, shown

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
    if not isinstance(text, str):  # a YAML number, `h: 0.5`: its range first (a huge int has no str())
        problem = literal_problem(text)
        if problem:
            raise CellError(problem, node=name)
    source = str(text).strip()
    if not source:
        raise CellError("empty equation", node=name)
    if len(source) > limits.MAX_EQUATION_CHARS:
        raise CellError(exceeds("equation length", len(source), "equation length",
                                f"{limits.MAX_EQUATION_CHARS} characters"), node=name)
    _check_text(name, source)
    try:
        with warnings.catch_warnings():
            # e.g. "invalid decimal literal" for `1if x`: the equation is refused or fine
            # anyway, and a warning would be a second line on the command line's stderr
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        col = f" at column {exc.offset}" if exc.offset else ""
        raise CellError(f"cannot parse equation '{clipped(source)}'{col}: {clipped(exc.msg)}", node=name) from None
    except (RecursionError, MemoryError):
        # Python's parser gives up on deep nesting (unary chains, long sums) before our check runs
        raise CellError(f"equation '{clipped(source)}' is nested too deeply to parse: exceeds limit "
                        f"'expression depth' ({limits.MAX_EXPRESSION_DEPTH} levels)", node=name) from None
    except ValueError as exc:  # e.g. Python's limit on the digits of an integer literal
        raise CellError(f"cannot parse equation '{clipped(source)}': {clipped(str(exc))}", node=name) from None
    _check_tree(name, source, tree)
    return _Builder(name, source, taken).build(tree.body)


def _check_text(name: str, source: str) -> None:
    """Characters and bracket nesting, before ``ast.parse`` sees the text."""
    for i, char in enumerate(source):
        if not char.isascii():
            # Python would fold it (NFKC) into another name without a word: 'ｈ' reads as 'h'
            raise CellError(describe_non_ascii(char, f" at column {i + 1}"), node=name)
        if not char.isprintable() and char not in " \t\n\r":
            raise CellError(f"control character {ascii(char)} at column {i + 1} is not allowed in an equation",
                            node=name)
    depth = deepest = 0
    for char in source:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    if deepest > limits.MAX_EXPRESSION_DEPTH:  # Python's own parser stops at 200 with a less clear message
        raise CellError(exceeds("bracket nesting", deepest, "expression depth",
                                f"{limits.MAX_EXPRESSION_DEPTH} levels"), node=name)


def _check_tree(name: str, source: str, tree: ast.Expression) -> None:
    """Nesting depth and name lengths, walked with an explicit stack: the builder that runs next
    recurses once per level."""
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        ident = node.id if isinstance(node, ast.Name) else node.arg if isinstance(node, ast.keyword) else None
        if ident is not None and len(ident) > limits.MAX_NAME_CHARS:
            raise CellError(exceeds(f"in '{clipped(source)}': name {shown(ident, 24)} of length", len(ident),
                                    "name length", f"{limits.MAX_NAME_CHARS} characters"), node=name)
        for child in ast.iter_child_nodes(node):
            stack.append((child, depth + isinstance(child, ast.expr)))
    if deepest > limits.MAX_EXPRESSION_DEPTH:
        raise CellError(exceeds(f"in '{clipped(source)}': expression depth", deepest, "expression depth",
                                f"{limits.MAX_EXPRESSION_DEPTH} levels"), node=name)


def literal_problem(value: int | float, what: str = "number") -> str | None:
    """Why a number cannot be a constant or an attribute of a cell (limit 'literal range'), or None."""
    allowed = f"limit 'literal range': finite, at most {limits.MAX_LITERAL_MAGNITUDE:g} in magnitude"
    if value != value or value in (math.inf, -math.inf):
        return f"{what} must be finite, not {shown(value)} ({allowed})"
    if abs(value) > limits.MAX_LITERAL_MAGNITUDE:  # an int of any size compares exactly
        return f"{what} {shown(value)} exceeds {allowed}"
    return None


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
        return CellError(f"in '{clipped(self.source)}'{where}: {msg}", node=self.root)

    def fresh(self, op: str) -> str:
        return unique_name(f"{self.root}_{op}", self.taken)

    def build(self, expr: ast.AST) -> list[Node]:
        if isinstance(expr, ast.Name) or _is_number(expr):
            # `c: c_prev` or `h: 0` — the node itself is an identity / constant.
            if isinstance(expr, ast.Name):
                self.emit("identity", [self.arg(expr)], {}, name=self.root)
            else:
                self.emit("const", [], {"value": self.number(expr)}, name=self.root)
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
            return self.emit("const", [], {"value": self.number(expr)})
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
                    return self.emit("const", [], {"value": -self.number(expr.operand)}, name)
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
            attrs: dict[str, Any] = {}
            for kw in expr.keywords:
                key = kw.arg
                assert key is not None  # **kwargs was refused above
                if key in attrs:  # ast.parse accepts f(a=1, a=2); only the compiler rejects it
                    raise self.fail(f"{fn}(): keyword '{key}' is given twice", expr)
                spec_attr = spec.attrs.get(key)
                if spec_attr is not None and spec_attr.type is str:  # a word from a fixed list: kind=general
                    attrs[key] = self.word(kw.value, f"{fn}({key}=...)", spec_attr.choices)
                else:
                    attrs[key] = self.literal(kw.value, f"{fn}({key}=...)", f"'{key}'")
            args = [self.arg(a) for a in expr.args]
            return self.emit(fn, args, attrs, name)
        if isinstance(expr, ast.Constant):  # numbers never get here: strings, True, None, ...
            raise self.fail(f"the constant {shown(expr.value)} is not allowed (only numbers such as 1 or 0.5)",
                            expr)
        if isinstance(expr, ast.Name) or _is_number(expr):
            raise self.fail("internal: leaf visited as an operation", expr)  # pragma: no cover
        raise self.fail(f"{_describe(expr)} is not allowed in an equation", expr)

    def literal(self, expr: ast.AST, what: str, name: str = "number") -> Any:
        if isinstance(expr, ast.Name) and expr.id in _BOOL_NAMES:
            return _BOOL_NAMES[expr.id]
        if isinstance(expr, ast.Constant) and isinstance(expr.value, bool):
            return expr.value
        if _is_number(expr):
            return self.number(expr, name)
        raise self.fail(f"{what} must be a number or true/false", expr)

    def word(self, expr: ast.AST, what: str, choices: tuple) -> str:
        value = expr.id if isinstance(expr, ast.Name) else expr.value \
            if isinstance(expr, ast.Constant) and isinstance(expr.value, str) else None
        if value is None or value not in choices:
            raise self.fail(f"{what} must be one of {', '.join(choices)}", expr)
        return value

    def number(self, expr: ast.AST, what: str = "number") -> float:
        value = _number(expr)
        problem = literal_problem(value, what)
        if problem:
            raise self.fail(problem, expr)
        return float(value)


def _is_number(expr: ast.AST) -> bool:
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, (ast.USub, ast.UAdd)):
        return _is_number(expr.operand)
    return isinstance(expr, ast.Constant) and isinstance(expr.value, (int, float)) \
        and not isinstance(expr.value, bool)


def _number(expr: ast.AST) -> int | float:
    """The value of a number literal, signs applied (an int stays exact: it may be beyond float range)."""
    if isinstance(expr, ast.UnaryOp):
        v = _number(expr.operand)
        return -v if isinstance(expr.op, ast.USub) else v
    return expr.value  # type: ignore[attr-defined]


def _describe(expr: ast.AST) -> str:
    names = {ast.Attribute: "attribute access (a.b)", ast.Subscript: "indexing (a[i])",
             ast.Lambda: "lambda", ast.Compare: "comparison", ast.BoolOp: "and/or",
             ast.IfExp: "if/else", ast.Constant: "this constant", ast.Tuple: "a tuple", ast.List: "a list"}
    return names.get(type(expr), type(expr).__name__)


# ---------------------------------------------------------------------- printing
_PREC = {"add": 1, "sub": 1, "mul": 2, "neg": 3}


def format_number(value: float) -> str:
    """The shortest text that reads back as ``value``: whole numbers below 1e15 without a decimal point,
    others as Python's ``repr`` of the float."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def inlined_nodes(graph: CellGraph) -> set[str]:
    """Auto-named nodes with exactly one reader, printed inside their reader's equation.

    A chain of such nodes (a search can grow one) would print as an equation deeper than the
    parser accepts (``MAX_EXPRESSION_DEPTH``); where it would, the deepest inlined argument is
    printed as an equation of its own instead, so every cell written can be read back."""
    consumers = graph.consumers
    states = set(graph.states)
    inline = {n.name for n in graph.nodes
              if n.auto and n.name not in states and (n.op == "const" or len(consumers.get(n.name, [])) == 1)}
    try:
        order = graph.order
    except CellError:  # a cycle: nothing is evaluated, nothing to bound
        return inline
    depth: dict[str, int] = {}  # node → nesting of its printed expression (a name is 1, -0.5 is 2)
    for name in order:
        node = graph.node_map[name]
        if node.op == "const":
            depth[name] = 2
            continue
        while True:
            inner = [(depth[a], a) for a in node.args if a in inline and a in depth]
            deepest = max(inner, default=(1, ""))
            here = 1 + max(deepest[0], 2 if node.attrs else 1)  # an attribute's number is at most 2 deep
            if here <= limits.MAX_EXPRESSION_DEPTH or not inner:
                break
            inline.discard(deepest[1])
        depth[name] = here
    return inline


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
    if isinstance(value, str):
        return value  # a word from the attribute's fixed list (kind=general)
    return format_number(value) if isinstance(value, (int, float)) else repr(value)

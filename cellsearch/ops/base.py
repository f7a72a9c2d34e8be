"""What an op is: the one object that holds everything every stage needs to know about it.

An ``Op`` carries its metadata (name, arity, attributes, value kinds, the range its result is
known to lie in, hashing properties) and one method per backend: the interpreter's rule, the
generated forward expression, the derivative rules of the generated backward, the Triton
expressions of the fused kernels and the exported module's expression. The backends
(``compile/``, ``export/``) ask the op object and never name an op, so adding an op is adding
one module to this package (see ``registry.py``).

The methods receive the backend's own context object, duck-typed so this package imports no
backend (it sits below ``dsl`` and ``compile`` in the layers):

* ``interpret(node, args, params, trace)``: ``params`` is a ``CellParameters`` (read with
  ``getattr`` and the parameter names this package defines); ``trace`` a dict or None;
* ``forward_expr(v, node, args, param)``: ``v`` the compiler's ``Variables`` (``ref``, ``is_const``);
* ``backward(bw, node, d)``: ``bw`` the backward emitter (``grad``, ``use``, ``line``, ``fresh``);
* ``triton_forward(k, node, args)`` / ``triton_backward(k, node, args, y, g, add)``: ``k`` the
  fused generator's kernel context (``interpreting``, ``scale``);
* ``export_expr(w, node, args)``: ``w`` the export writer; ``args`` (text, precedence) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# What is known about the sign of a value (``Op.result_range``): a lattice with "anything" (None)
# at the bottom. ``Op.domain`` names what an op needs of its arguments.
POSITIVE = "positive"
NONNEGATIVE = "nonnegative"
_RANGE_TEXT = {POSITIVE: "positive", NONNEGATIVE: "non-negative"}


def satisfies(have: str | None, want: str | None) -> bool:
    """Whether a value known to be ``have`` meets the requirement ``want`` (None: none)."""
    if want is None:
        return True
    return have == want or (want == NONNEGATIVE and have == POSITIVE)


def range_text(r: str) -> str:
    """The word for a range (POSITIVE, NONNEGATIVE) in an error message."""
    return _RANGE_TEXT[r]


@dataclass(frozen=True)
class AttrSpec:
    """A keyword attribute of an op: its type and default."""

    type: type
    default: Any
    doc: str = ""
    choices: tuple = ()  # for str attributes: the allowed values


def paren(text: str, needed: bool) -> str:
    """``text`` in parentheses when ``needed`` (a lower-precedence operand), else as it is."""
    return f"({text})" if needed else text


class Prelude:
    """Module-level helper functions an exported module needs when a cell uses an op family:
    their source, the names they take, and when they are needed."""

    def __init__(self, names: set[str], source: str, needed):
        self.names = names
        self.source = source
        self.needed = needed  # graph -> bool


class Op:
    """One op (see the module docstring). Subclasses are op families; an instance is one op."""

    # ---- structural roles the backends ask about (instead of naming ops)
    is_matmul = False  # its value is a sum of matmuls of its arguments: the compiler groups these
    is_literal = False  # a number, inlined wherever it is read (no node in generated code)
    has_scale = False  # it has one learned (hidden,) scale, a per-step constant of the loop
    reads_given_memory = False  # it reads a given memory (with a padding mask) and keys made from it
    fuses_after_matmul = False  # one call covers a run of matmul columns feeding it (``run_expr``)
    sum_fold = False  # a + b: may fold a product it reads into one torch.addcmul
    product_fold = False  # a * b: may be folded into the sum that reads it
    export_reads_twice: tuple[int, ...] = ()  # arguments the exported expression reads twice
    export_param_phase: int | None = None  # order of its parameters in the exported __init__
    export_prelude: Any = None  # a ``Prelude`` the exported module needs when a cell uses the op
    triton = False  # the fused kernels can compute it (triton_forward / triton_backward)
    starts_empty = False  # a memory state it writes starts at 0 (a stack), not as an NTM memory's pattern
    min_hidden = 1  # the hidden size it needs at least (shift reads three features of a vector)
    # with reads_given_memory: the argument that is the memory (declared only: set by those ops)
    memory_arg: int

    def __init__(self, name: str, kind: str, min_args: int, max_args: int | None, *, commutative: bool = False,
                 attrs: dict[str, AttrSpec] | None = None, doc: str = "", signature: tuple | None = None,
                 infix: str | None = None, call: bool = True, space_activation: bool = False,
                 domain: str | None = None):
        self.name = name
        # "linear" | "elementwise" | "activation" | "const" | "scale" | "attention" | "memory" | "stack"
        self.kind = kind
        self.min_args = min_args
        self.max_args = max_args  # None: any number >= min_args
        self.commutative = commutative  # argument order does not change the value (hashing sorts them)
        self.attrs = attrs or {}
        self.doc = doc
        # (kinds of the arguments, kind of the result) for ops over memories; None: vectors to a vector
        self.signature = signature
        self.infix = infix  # the equations' binary infix symbol ("+"), if it has one
        self.written_as_call = call  # written as a function call in equations
        self.space_activation = space_activation  # search spaces offer it as an activation
        self.domain = domain  # what every argument must be known to be (POSITIVE, NONNEGATIVE) or None

    def __repr__(self) -> str:
        return f"<op {self.name}>"

    def arity_text(self) -> str:
        """How many arguments it takes, for an error message ("2", "1 to 3", "at least 1")."""
        if self.max_args is None:
            return f"at least {self.min_args}"
        if self.min_args == self.max_args:
            return str(self.min_args)
        return f"{self.min_args} to {self.max_args}"

    # ---- value kinds and ranges (dsl validation)
    def arg_kinds(self, n_args: int) -> tuple[str, ...]:
        """The value kind ("vector", "memory", ...) each of ``n_args`` arguments must have."""
        return self.signature[0] if self.signature else ("vector",) * n_args

    def result_kind(self) -> str:
        """The value kind of its result ("vector" unless its signature says otherwise)."""
        return self.signature[1] if self.signature else "vector"

    def result_range(self, node: Any, arg_ranges: list[str | None]) -> str | None:
        """What the result is known to be (POSITIVE, NONNEGATIVE) given its arguments', or None."""
        return None

    # ---- backends: subclasses override what applies to them
    def interpret(self, node: Any, args: list, params: Any, trace: dict | None) -> Any:
        """The interpreter's rule: ``node``'s value (a tensor) from its arguments' values."""
        raise NotImplementedError(self.name)

    def forward_expr(self, v: Any, node: Any, a: list[str], param: str | None = None) -> str:
        """The generated forward's expression for ``node`` over its arguments' names ``a``
        (``param``: the name its per-step parameter is read from, where it has one)."""
        raise NotImplementedError(self.name)

    def backward(self, bw: Any, node: Any, d: str) -> None:
        """Emit the generated backward's lines that pass ``d`` (the gradient of ``node``'s value)
        on to its arguments through ``bw.grad``."""
        raise NotImplementedError(self.name)

    def triton_forward(self, k: Any, node: Any, a: list[str]) -> str:
        """The fused kernel's Triton expression for ``node`` over its arguments ``a``."""
        raise NotImplementedError(self.name)

    def triton_backward(self, k: Any, node: Any, a: list[str], y: str, g: str, add: Any) -> None:
        """The fused backward kernel's gradients: ``add(i, expr, sign)`` for argument ``i``, given
        the output ``y`` and its gradient ``g``."""
        raise NotImplementedError(self.name)

    def export_expr(self, w: Any, node: Any, args: list[tuple[str, int]]) -> tuple[str, int]:
        """The exported module's expression for ``node`` and its precedence, from its arguments'
        (text, precedence) pairs."""
        raise NotImplementedError(self.name)

    # ---- hooks that only ops with the matching role flag define
    def value(self, node: Any) -> float:
        """With ``is_literal``: the number ``node`` stands for."""
        raise NotImplementedError(self.name)

    def param_name(self, node: str) -> str:
        """With ``has_scale``: the parameter name of ``node``'s learned scale."""
        raise NotImplementedError(self.name)

    def run_expr(self, x: str) -> str:
        """With ``fuses_after_matmul``: the generated call on ``x`` (a run of matmul columns)."""
        raise NotImplementedError(self.name)

    def act_backward(self, grad: str, out_value: str, out: str | None = None) -> str:
        """With ``fuses_after_matmul``: its backward from its output value (into ``out`` if given)."""
        raise NotImplementedError(self.name)

    def step_aux_roles(self, node: Any) -> list[str]:
        """With ``reads_given_memory``: the per-step constants of an in-loop node besides the bias."""
        raise NotImplementedError(self.name)

    def step_outputs(self, node: Any) -> tuple[str, ...]:
        """With ``reads_given_memory``: what the step call returns besides the value, for the backward."""
        raise NotImplementedError(self.name)

    def aux_expr(self, name: str, role: str, memory: str) -> str:
        """With ``reads_given_memory``: the expression of one per-step constant of node ``name``."""
        raise NotImplementedError(self.name)

    def call(self, v: Any, node: Any, query: str, hoisted: bool) -> str:
        """With ``reads_given_memory``: the generated helper call reading the memory for ``query``."""
        raise NotImplementedError(self.name)

    # ---- parameters (none by default)
    def parameters(self, node: Any, sizes: dict[str, int], hidden: int) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of each learned parameter of ``node``, in registration order."""
        return []

    def init_parameters(self, node: Any, get: Any) -> None:
        """Set ``node``'s parameters (``get(name)`` gives the tensor) to the cell's initial values
        after the uniform draw; by default they keep it."""

    def export_param_lines(self, node: Any, size_expr: Any) -> list[str]:
        """``__init__`` lines (unindented) creating ``node``'s parameters in the exported module."""
        return []

    def export_reset_lines(self, node: Any) -> list[str]:
        """``reset_parameters`` lines (unindented) applying ``node``'s initial values."""
        return []


class Elementwise(Op):
    """An op written alike in every generated text: an operator template on its arguments
    (``{0} + {1}``), with its derivative rules."""

    triton = True

    def __init__(self, name: str, arity: int, template: str, *, interpret: Any, grads: tuple,
                 triton_grads: tuple | None = None, export: Any, **kw: Any):
        super().__init__(name, kw.pop("kind", "elementwise"), arity, arity, **kw)
        self.template = template
        self._interpret = interpret
        # per argument: (sign, expression template over d and the args, simple?) for the
        # generated backward; "{d}" is the gradient, "{0}".. the arguments
        self.grads = grads
        self.triton_grads = triton_grads if triton_grads is not None else grads
        self._export = export

    def interpret(self, node, args, params, trace):
        return self._interpret(*args)

    def forward_expr(self, v, node, a, param=None):
        return self.template.format(*a)

    def backward(self, bw, node, d):
        for arg, (sign, expr, simple) in zip(node.args, self.grads):
            bw.grad(arg, expr.format(*[_Lazy(bw, x) for x in node.args], d=d), sign, simple=simple)

    def triton_forward(self, k, node, a):
        return self.template.format(*a)

    def triton_backward(self, k, node, a, y, g, add):
        for i, (sign, expr, _) in enumerate(self.triton_grads):
            add(i, expr.format(*a, d=g), sign)

    def export_expr(self, w, node, args):
        return self._export(*args)


class HelperOp(Op):
    """An op the generated code computes by calling helper functions: ``<name>(args)`` forward and
    ``<name>_backward(d, args)`` backward, which returns the gradients of the arguments in order; the
    exported module calls ``<name>(args)``, defined by the op family's ``export_prelude``."""

    def forward_expr(self, v, node, a, param=None):
        return f"{self.name}({', '.join(a)})"

    def backward(self, bw, node, d):
        grads = [bw.fresh(f"d_{node.name}_{k}") for k in range(len(node.args))]
        # (the trailing comma unpacks the one gradient of a one-argument op too)
        bw.line(f"{', '.join(grads)}, = {self.name}_backward({d}, {', '.join(bw.use(a) for a in node.args)})")
        for a, g in zip(node.args, grads):
            bw.grad(a, g, simple=True)

    def export_expr(self, w, node, args):
        return f"{self.name}({', '.join(t for t, _ in args)})", 9


class _Lazy:
    """An argument of a backward expression: ``bw.use``d (saved by the step) only if the
    expression reads it, in the order the expression reads it."""

    def __init__(self, bw: Any, value: str):
        self.bw, self.value = bw, value

    def __format__(self, spec: str) -> str:
        return self.bw.use(self.value)


__all__ = ["AttrSpec", "Elementwise", "HelperOp", "NONNEGATIVE", "Op", "POSITIVE", "Prelude", "paren", "range_text", "satisfies"]

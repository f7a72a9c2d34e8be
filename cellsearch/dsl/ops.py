"""The closed set of operations a cell may use.

Every stage (parser, validator, hash, interpreter, compiler, search spaces, export) reads
this one table, so adding an op means adding a row here and a rule in each backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AttrSpec:
    """A keyword attribute of an op: its type and default."""

    type: type
    default: Any
    doc: str = ""
    choices: tuple = ()  # for str attributes: the allowed values


@dataclass(frozen=True)
class OpSpec:
    name: str
    kind: str  # "linear" | "elementwise" | "activation" | "const" | "scale" | "attention" | "memory"
    min_args: int
    max_args: int | None  # None: any number >= min_args
    commutative: bool = False  # argument order does not change the value
    attrs: dict[str, AttrSpec] = field(default_factory=dict)
    doc: str = ""

    def arity_text(self) -> str:
        if self.max_args is None:
            return f"at least {self.min_args}"
        if self.min_args == self.max_args:
            return str(self.min_args)
        return f"{self.min_args} to {self.max_args}"


ACTIVATIONS = ("tanh", "sigmoid", "relu", "leaky_relu", "identity")
ATTENTION_KINDS = ("dot", "general", "additive")
# Ops over memories (a (B, N, hidden) matrix per sequence: a memory leaf, or a memory state that
# write() updates): the kind of value each argument must be, and the kind of the result. Every
# other op reads and returns vectors (B, hidden); "weights" are (B, N), one weight per row.
SIGNATURES: dict[str, tuple[tuple[str, ...], str]] = {
    "attend": (("vector", "matrix"), "vector"),
    "address": (("vector", "matrix", "vector"), "weights"),
    "read": (("weights", "matrix"), "vector"),
    "write": (("matrix", "weights", "vector", "vector"), "matrix"),
}

OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in [
        OpSpec("linear", "linear", 1, None, commutative=True, attrs={
            "bias": AttrSpec(bool, True, "add a learned bias"),
            "bias_init": AttrSpec(float, None, "initial value of the bias, e.g. 1.0 for a forget gate "
                                  "(default: uniform like the weights)"),
            "diag_init": AttrSpec(float, None, "Jozefowicz's Linear(a, x): square weights initialised "
                                  "small plus this value on the diagonal (hidden-sized arguments only)"),
        }, doc="W_1 a_1 + W_2 a_2 + ... + b, with its own weights at each occurrence"),
        OpSpec("add", "elementwise", 2, 2, commutative=True, doc="a + b"),
        OpSpec("sub", "elementwise", 2, 2, doc="a - b"),
        OpSpec("mul", "elementwise", 2, 2, commutative=True, doc="a * b (elementwise)"),
        OpSpec("neg", "elementwise", 1, 1, doc="-a"),
        OpSpec("one_minus", "elementwise", 1, 1, doc="1 - a"),
        OpSpec("blend", "elementwise", 3, 3, doc="blend(z, a, b) = z * a + (1 - z) * b"),
        OpSpec("diag", "scale", 1, 1, attrs={
            "init": AttrSpec(float, None, "initial value of every scale (default: uniform like the weights)"),
        }, doc="p * a with a learned elementwise scale p (peepholes)"),
        OpSpec("const", "const", 0, 0, attrs={
            "value": AttrSpec(float, 0.0, "the constant"),
        }, doc="a numeric constant broadcast to hidden size"),
        OpSpec("tanh", "activation", 1, 1, doc="tanh(a)"),
        OpSpec("sigmoid", "activation", 1, 1, doc="logistic sigmoid"),
        OpSpec("relu", "activation", 1, 1, doc="max(a, 0)"),
        OpSpec("leaky_relu", "activation", 1, 1, attrs={
            "slope": AttrSpec(float, 0.01, "slope for negative inputs"),
        }, doc="a if a > 0 else slope * a"),
        OpSpec("identity", "activation", 1, 1, doc="a"),
        OpSpec("attend", "attention", 2, 2, attrs={
            "kind": AttrSpec(str, "dot", "the score of a memory row m given the query q: dot (q·m, Luong), "
                             "general (q·W m, Luong) or additive (v·tanh(W q + U m), Bahdanau)",
                             choices=ATTENTION_KINDS),
        }, doc="attend(q, M): the softmax(score(q, M_n))-weighted sum of the rows of memory M "
               "(padding rows masked out), a hidden-sized context vector"),
        OpSpec("address", "memory", 3, 3, doc="address(k, M, beta): content addressing of the Neural Turing "
               "Machine, weights softmax_n(b · cos(k, M_n)) over the rows of M with the key strength "
               "b = softplus(mean(beta))"),
        OpSpec("read", "memory", 2, 2, doc="read(w, M): the w-weighted sum of the rows of M (a vector)"),
        OpSpec("write", "memory", 4, 4, doc="write(M, w, erase, add): M ⊙ (1 − w ⊗ erase) + w ⊗ add, the "
               "NTM's write (erase and add vectors in [0, 1] and any, e.g. sigmoid(...) and tanh(...))"),
    ]
}

# Infix spellings the equation parser and printer use.
BINARY_INFIX = {"add": "+", "sub": "-", "mul": "*"}
# Ops written as function calls in equations (the rest are infix, unary minus or literals).
CALLABLE_OPS = tuple(name for name in OPS if name not in ("add", "sub", "mul", "neg", "const"))


def attr_defaults(op: str) -> dict[str, Any]:
    return {k: a.default for k, a in OPS[op].attrs.items()}


def normalize_attrs(op: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes with defaults dropped and types coerced, so equal cells compare equal.

    Raises KeyError/TypeError/ValueError with a message; callers wrap them into CellError.
    """
    spec = OPS[op]
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if key not in spec.attrs:
            allowed = ", ".join(spec.attrs) or "none"
            raise KeyError(f"{op}() has no attribute '{key}' (allowed: {allowed})")
        a = spec.attrs[key]
        if a.type is bool:
            if not isinstance(value, bool):
                raise TypeError(f"{op}(): '{key}' must be true or false, not {value!r}")
        elif a.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{op}(): '{key}' must be a number, not {value!r}")
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{op}(): '{key}' must be finite, not {value!r}")
        elif a.type is str:
            if not isinstance(value, str) or value not in a.choices:
                raise ValueError(f"{op}(): '{key}' must be one of {', '.join(a.choices)}, not {value!r}")
        if value != a.default:
            out[key] = value
    return out

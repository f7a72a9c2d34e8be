"""The op registry: every op a cell may use, collected from the op modules of this package.

Every stage (parser, validator, hash, interpreter, compiler, fused kernels, search spaces,
export) reads ``OPS`` and asks the op object, so adding an op is adding it to one op module
(a new module of this package is found by itself); ``tests/test_op_registry.py`` then runs the
differential tests on random cells that use it.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import cellsearch.ops
from cellsearch.ops.base import Op

# The ops that came before the registry, in the order the op table listed them (error messages,
# docs and the parser's "known:" list keep it); ops added since follow, by module name.
_ORDER = ("linear", "add", "sub", "mul", "neg", "one_minus", "blend", "diag", "const", "tanh", "sigmoid", "relu",
          "leaky_relu", "identity", "attend", "address", "read", "write")
_NOT_OPS = ("base", "registry")


def _collect() -> dict[str, Op]:
    """Every ``OPS`` tuple of the modules of this package: a new op module needs no edit here."""
    found: dict[str, Op] = {}
    for info in sorted(pkgutil.iter_modules(cellsearch.ops.__path__), key=lambda m: m.name):
        if info.name in _NOT_OPS:
            continue
        module = importlib.import_module(f"cellsearch.ops.{info.name}")
        for op in getattr(module, "OPS", ()):
            if op.name in found:  # pragma: no cover - a programming error in an op module
                raise ValueError(f"op '{op.name}' is defined twice")
            found[op.name] = op
    rank = {name: i for i, name in enumerate(_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(rank)), list(found).index(kv[0]))))


OPS: dict[str, Op] = _collect()

ACTIVATIONS = tuple(name for name, op in OPS.items() if op.space_activation)
ATTENTION_KINDS = OPS["attend"].attrs["kind"].choices
# Ops over memories (a (B, N, hidden) matrix per sequence: a memory leaf, or a memory state that
# write() updates): the kind of value each argument must be, and the kind of the result. Every
# other op reads and returns vectors (B, hidden); "weights" are (B, N), one weight per row.
SIGNATURES: dict[str, tuple[tuple[str, ...], str]] = {name: op.signature for name, op in OPS.items() if op.signature}
# Infix spellings the equation parser and printer use.
BINARY_INFIX = {name: op.infix for name, op in OPS.items() if op.infix}
# Ops written as function calls in equations (the rest are infix, unary minus or literals).
CALLABLE_OPS = tuple(name for name, op in OPS.items() if op.written_as_call)


def preludes() -> list[Any]:
    """The distinct export preludes of the registered ops, in registry order."""
    out: list[Any] = []
    for op in OPS.values():
        if op.export_prelude is not None and op.export_prelude not in out:
            out.append(op.export_prelude)
    return out


def attr_defaults(op: str) -> dict[str, Any]:
    """Every attribute of ``op`` with its default value."""
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


__all__ = ["ACTIVATIONS", "ATTENTION_KINDS", "BINARY_INFIX", "CALLABLE_OPS", "OPS", "SIGNATURES", "attr_defaults",
           "normalize_attrs", "preludes"]

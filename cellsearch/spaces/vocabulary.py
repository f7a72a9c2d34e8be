"""The words a space file may use (kinds, ops, activations, transformations) and their field validators.

Each vocabulary is a tuple in display order; the ``Annotated`` field types (``Activation``,
``GraphOp``, ``CellRef``, ...) check one item each and say what is allowed (with a "did you mean"
hint) when it is not. ``FieldProblem`` is what a model-level check raises to name the field it
is about. The schema models (``cellsearch.spaces.schema``) are built from these.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo

from cellsearch.dsl.graph import CellGraph
from cellsearch.dsl.ops import ACTIVATIONS, ATTENTION_KINDS, OPS
from cellsearch.spaces.components import COMPONENT_NAMES
from cellsearch.errors import CellError
from cellsearch.limits import clipped, shown

KINDS: tuple[str, ...] = ("tree", "mutation", "dag", "graph", "finite")
TREE_COMBINATIONS = ("add", "mul")
ELEMENTWISE_OPS = ("add", "sub", "mul")
TRANSFORMATIONS = ("replace_activation", "swap_op", "insert_activation", "remove_node",
                   "replace_by_ancestor", "replace_by_combination")
MUTATION_RATES = ("uniform", "one_to_three", "decisions")
GRAPH_OPS = ("linear", "blend", "add", "sub", "mul", "neg", "one_minus", "diag",
             "tanh", "sigmoid", "relu", "leaky_relu", "identity")
_LINEAR_A = re.compile(r"linear(-?\d+(?:\.\d+)?)")


def linear_activation_value(label: str) -> float | None:
    """``A`` for Jozefowicz's ``linearA`` (``linear0.9`` → 0.9), None for any other label."""
    m = _LINEAR_A.fullmatch(label)
    return float(m.group(1)) if m else None


def activation_label(value: float) -> str:
    """The mutation label of a scaled-identity activation (``linear0.9`` for 0.9)."""
    return f"linear{value:g}"


MUTATION_ACTIVATIONS_TEXT = ", ".join(ACTIVATIONS) + ", linearA for a number A (e.g. linear0.9)"


class FieldProblem(ValueError):
    """A model-level check that knows which field is wrong (``path`` as in the error message)."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


# ---------------------------------------------------------------------- item validators
def choice(what: str, allowed: tuple[str, ...]):
    """A validator accepting one of ``allowed`` (the error names ``what`` and lists them)."""
    def check(value: str) -> str:
        if value not in allowed:
            close = difflib.get_close_matches(value, allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"unknown {what} {shown(value)} ({hint}allowed: {', '.join(allowed)})")
        return value
    return check


def _mutation_activation(value: str) -> str:
    if value in ACTIVATIONS:
        return value
    a = linear_activation_value(value)
    if a is None:
        close = difflib.get_close_matches(value, [*ACTIVATIONS, "linear0", "linear1", "linear0.9", "linear1.1"], n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"unknown activation {shown(value)} ({hint}allowed: {MUTATION_ACTIVATIONS_TEXT})")
    return activation_label(a)


def _graph_op(value: str) -> str:
    if value in OPS and value not in GRAPH_OPS:
        raise ValueError(f"op {shown(value)} cannot be used in a graph space (allowed: {', '.join(GRAPH_OPS)})")
    return choice("op", GRAPH_OPS)(value)


def resolve_cell_ref(value: str, info: ValidationInfo) -> tuple[str, CellGraph]:
    """A cell given by built-in name or path (relative to the space file's folder)."""
    from cellsearch.dsl.io import load_cell
    from cellsearch.library import builtin_names, get_cell

    base_dir = (info.context or {}).get("base_dir")
    path = Path(value)
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in value or os.sep in value
    if not looks_like_path:
        if value in builtin_names():
            return value, get_cell(value)
        names = builtin_names()
        close = difflib.get_close_matches(value, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"unknown cell {shown(value)} ({hint}built-in cells: {', '.join(names)}; "
                         "or give the path of a YAML cell file)")
    try:
        if not path.is_absolute() and base_dir is not None and (Path(base_dir) / path).exists():
            path = Path(base_dir) / path
        return str(path), load_cell(path, warn=False)
    except CellError as exc:
        raise ValueError(f"cannot load cell {shown(value)}: {exc}") from None
    except (OSError, ValueError) as exc:  # exists() on a name the OS refuses (too long, a NUL byte)
        raise ValueError(f"cannot load cell {shown(value)}: {clipped(str(exc))}") from None


def _cell_ref(value: str, info: ValidationInfo) -> str:
    return resolve_cell_ref(value, info)[0]


def unique(values: list, what: str) -> list:
    """``values`` if it is not empty and lists nothing twice."""
    if not values:
        raise ValueError(f"must list at least one {what}")
    seen = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{shown(v)} is listed twice")
        seen.add(v)
    return values


def between(value: int, lo: int, hi: int) -> int:
    """``value`` if it lies in [``lo``, ``hi``]; ValueError (a field validator's message) otherwise."""
    if not lo <= value <= hi:
        raise ValueError(f"must be between {lo} and {hi}, got {value}")
    return value


Combination = Annotated[str, AfterValidator(choice("combination", TREE_COMBINATIONS))]
Activation = Annotated[str, AfterValidator(choice("activation", ACTIVATIONS))]
AttentionKind = Annotated[str, AfterValidator(choice("attention kind", ATTENTION_KINDS))]
MemoryComponent = Annotated[str, AfterValidator(choice("memory component", COMPONENT_NAMES))]
MutationActivation = Annotated[str, AfterValidator(_mutation_activation)]
ElementwiseOp = Annotated[str, AfterValidator(choice("elementwise op", ELEMENTWISE_OPS))]
Transformation = Annotated[str, AfterValidator(choice("transformation", TRANSFORMATIONS))]
GraphOp = Annotated[str, AfterValidator(_graph_op)]
CellRef = Annotated[str, AfterValidator(_cell_ref)]

__all__ = ["KINDS", "TREE_COMBINATIONS", "ELEMENTWISE_OPS", "TRANSFORMATIONS", "MUTATION_RATES", "GRAPH_OPS",
           "linear_activation_value", "activation_label", "FieldProblem", "choice", "unique", "between",
           "resolve_cell_ref", "Combination", "Activation", "MutationActivation", "ElementwiseOp",
           "Transformation", "GraphOp", "CellRef", "MemoryComponent"]

"""The closed set of operations a cell may use, as the DSL sees it: the op registry's table.

Each op is one object in ``cellsearch.ops`` (one module per op family) holding everything
about it; this module hands the DSL the registry's table and the views the parser, printer,
validator and spaces read.
"""

from __future__ import annotations

from cellsearch.ops.base import AttrSpec, Op
from cellsearch.ops.registry import (ACTIVATIONS, ATTENTION_KINDS, BINARY_INFIX, CALLABLE_OPS, OPS, SIGNATURES,
                                     attr_defaults, normalize_attrs)

OpSpec = Op  # the name the table's rows had before the registry

__all__ = ["ACTIVATIONS", "ATTENTION_KINDS", "AttrSpec", "BINARY_INFIX", "CALLABLE_OPS", "OPS", "Op", "OpSpec",
           "SIGNATURES", "attr_defaults", "normalize_attrs"]

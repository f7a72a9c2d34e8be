"""Python identifiers for generated code: the one name allocator of every code generator.

The compiler (``cellsearch.compile``) and the exporter (``cellsearch.export``) both turn a
cell's names into Python variables and invent helper variables next to them. ``Names`` does
both over one set of taken identifiers:

* ``bind(value)``: the variable of a cell name. The name is kept unless it is reserved or
  already taken, then ``_`` is appended until it is free (``input`` → ``input_``); binding
  the same name again returns the same variable.
* ``fresh(base)``: a new helper variable, ``base`` or else ``base1``, ``base2``, ... (the
  scheme of ``cellsearch.dsl.graph.unique_name``, which does the work).

Reserved names (``PYTHON_RESERVED``: keywords and builtins, plus what a generator's own code
uses) are never handed out, so every variable is a valid identifier that shadows nothing,
provided the bases are identifiers (cell names are: ``cellsearch.dsl.graph`` checks them).
"""

from __future__ import annotations

import builtins
import keyword
from typing import Iterable

from cellsearch.dsl.graph import unique_name

PYTHON_RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins))


class Names:
    """Variables of one generated scope (see the module docstring)."""

    def __init__(self, reserved: Iterable[str] = PYTHON_RESERVED):
        self.reserved = frozenset(reserved)
        self.taken: set[str] = set()
        self.names: dict[str, str] = {}  # bound name -> its variable

    def bind(self, value: str) -> str:
        """The variable of ``value``: ``value`` itself unless reserved or taken, else ``value_``, ``value__``..."""
        var = self.names.get(value)
        if var is None:
            var = value
            while var in self.reserved or var in self.taken:
                var += "_"
            self.taken.add(var)
            self.names[value] = var
        return var

    def fresh(self, base: str) -> str:
        """A new variable: ``base``, else ``base1``, ``base2``, ... (never reserved or taken)."""
        return unique_name(base, self.taken, self.reserved)

    def __getitem__(self, value: str) -> str:
        """The variable already bound to ``value`` (KeyError if it has none)."""
        return self.names[value]


__all__ = ["Names", "PYTHON_RESERVED"]

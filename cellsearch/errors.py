"""One root error class for everything a user can get wrong.

Library code raises these with a message that says what to change; only the CLI turns
them into a single line on stderr and exit status 2 (see ``cellsearch.cli``).
"""

from __future__ import annotations


class CellsearchError(Exception):
    """Root of every error cellsearch raises on bad input or a bad environment."""

    exit_code = 2


class CellError(CellsearchError, ValueError):
    """A cell description is invalid.

    ``source`` names the file (or ``<string>``), ``node`` the offending node and ``line`` the
    line in the file when it is known, so the message points at the place to fix.
    """

    def __init__(self, reason: str, *, node: str | None = None, source: str | None = None,
                 line: int | None = None, column: int | None = None):
        self.reason = reason
        self.node = node
        self.source = source
        self.line = line
        self.column = column
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.source or "<cell>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.node is not None:
            return f"{where}: node '{self.node}': {self.reason}"
        return f"{where}: {self.reason}"

    def located(self, source: str | None = None, line: int | None = None) -> "CellError":
        """The same error with the file (and line, if known) filled in."""
        return CellError(self.reason, node=self.node, source=source or self.source,
                         line=self.line if line is None else line, column=self.column)


class CellWarning(UserWarning):
    """A cell is valid but probably not what was meant (e.g. an unused node)."""


class SizeError(CellError):
    """Tensor sizes do not fit the cell (e.g. an input used elementwise when I != H)."""


class DataError(CellsearchError):
    """A data set is missing, corrupted or cannot be downloaded (``field``: the setting to change,
    as ``ConfigError``'s)."""

    def __init__(self, message: str = "", *, field: str | tuple[str, ...] | None = None):
        super().__init__(message)
        self.fields: tuple[str, ...] = (field,) if isinstance(field, str) else tuple(field or ())


class ConfigError(CellsearchError):
    """A configuration file or option is invalid.

    ``field`` names the setting(s) at fault as ``Record.field`` (``"SearchConfig.trials"``), one
    or a tuple; the message names each by its bare field name (``trials must be ...``), so a
    Python caller reads the name it wrote. The command line shows its flag instead
    (``cellsearch.cli.flags``)."""

    def __init__(self, message: str = "", *, field: str | tuple[str, ...] | None = None):
        super().__init__(message)
        self.fields: tuple[str, ...] = (field,) if isinstance(field, str) else tuple(field or ())

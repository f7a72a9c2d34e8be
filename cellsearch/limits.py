"""The limits on every input a user hands us, in one place.

Cell files, space files, checkpoints and run files are data from outside: each reader checks
its input against the limit here before doing work whose cost grows with it, and breaking a
limit raises ``LimitError`` (for a cell file, a ``CellError`` with the file, node and line)
whose message names the limit (e.g. ``limit 'equation length'``), so a user knows which knob
they hit. The values are generous for any real cell or search and small enough that a hostile
file costs milliseconds and megabytes, not minutes and gigabytes. Messages quote the input
they refuse through ``shown``/``clipped``: one line, cut short, however large the input.
"""

from __future__ import annotations

import reprlib

from cellsearch.errors import ConfigError

# ---------------------------------------------------------------------- run files and checkpoints
MAX_CHECKPOINT_BYTES = 4 << 30  # a checkpoint.pt (weights, optimizer state, carried state)
MAX_RUN_JSON_BYTES = 64 << 20  # config.json / state.json of a run (the RL controller's state is the largest)
MAX_LOCK_HOLDER_BYTES = 4096  # .writer.json, one short line (a larger one is read as "holder unknown")

# ---------------------------------------------------------------------- cell, space and recipe files
# Sizes are checked before a file is read whole; a cell's YAML text (e.g. from a results
# database) is held to the cell-file limit too, counted in characters.
MAX_CELL_FILE_BYTES = 1 << 20  # the built-in cells are under 1 KB; a 1000-node graph-form cell ~60 KB
MAX_SPACE_FILE_BYTES = 1 << 20  # the shipped spaces are under 3 KB
MAX_RECIPE_FILE_BYTES = 64 << 20  # a NAS-Bench-NLP recipe file or training log (all 14k recipes fit)
MAX_TRAINING_RECIPE_FILE_BYTES = 1 << 20  # a training recipe (--recipe); the shipped ones are under 2 KB
MAX_TABLE_FILE_BYTES = 1 << 30  # a replay table (.parquet/.csv/.json); 14k NAS-Bench-NLP cells take ~10 MB

# ---------------------------------------------------------------------- cells
MAX_NODES_PER_CELL = 4096  # nodes of one cell, sub-expressions included (mutation spaces allow 1000)
MAX_NAME_CHARS = 128  # a name of a cell, input, state, node or attribute
# A cell's description and source (the paper it comes from): prose that reaches docstrings,
# model cards and YAML headers (always as a safe literal, see cellsearch.dsl.literals).
MAX_CELL_TEXT_CHARS = 4096
MAX_EQUATION_CHARS = 4096  # one equation's text; also keeps ast.parse far below Python's own limits
# Nesting of one equation (``x`` is 1, ``tanh(x)`` 2, a flat sum of n terms n). The equation
# builder recurses once per level, so this also keeps it far below Python's recursion limit; the
# DAG space's widest cells (64-term sums) reach about 70.
MAX_EXPRESSION_DEPTH = 100
# |number| in an equation or an attribute. Cells compute in float32 (max ~3.4e38), and up to
# 1e15 every integer prints back as itself (see ``format_number``).
MAX_LITERAL_MAGNITUDE = 1e15

# ---------------------------------------------------------------------- YAML documents (cells, spaces, options)
MAX_YAML_DEPTH = 64  # nested collections (a graph-form cell needs 4, a space 2)
# Parser events in one document. The pure-Python parser takes ~35 µs an event, so this bounds
# the time a file can cost (a 1000-node graph-form cell has ~9000).
MAX_YAML_EVENTS = 40_000
# Nodes with every alias counted as a full copy of its anchor: what walking the data costs.
MAX_YAML_EXPANDED_NODES = 100_000
# Characters of a YAML number: longer integers would reach Python's int-from-string limit
# (4300 digits) or overflow float(); no real number in a cell or space needs more.
MAX_YAML_NUMBER_CHARS = 64

# ---------------------------------------------------------------------- error messages
MAX_BUDGETS = 16  # budgets on one fidelity curve (fidelity --budgets)
MAX_POPULATION = 1024  # members of one population (train --seeds/--lrs): their product is checked before training
MAX_QUOTED_CHARS = 80  # user input quoted in an error message (messages are one line, whatever the input)

# ---- replay tables
# Rows of a replay table (search --benchmark): NAS-Bench-NLP's logs give 14k, the shipped tables
# a few hundred. Loading costs ~20 µs and ~1.7 KB a row, so this bounds it at ~4 s and ~350 MB;
# a Parquet file's count is read from its metadata, CSV and JSON tables stop reading one row past it.
MAX_TABLE_ROWS = 200_000
# A Parquet table's data decoded (its metadata's uncompressed size, before reading): what a CSV
# table may hold (MAX_TABLE_FILE_BYTES), however well the file compresses.
MAX_TABLE_DATA_BYTES = 1 << 30


class LimitError(ConfigError):
    """An input is larger (longer, deeper, ...) than cellsearch accepts; the message names the limit."""

    def __init__(self, what: str, limit: str, value: object, maximum: object):
        self.what = what
        self.limit = limit
        super().__init__(f"{what}: {value} exceeds limit '{limit}' ({maximum})")


def check_limit(what: str, limit: str, value: int | float, maximum: int | float) -> None:
    """Raise ``LimitError`` when ``value > maximum``."""
    if value > maximum:
        raise LimitError(what, limit, value, maximum)


def check_file_size(path, limit: str, maximum: int) -> int:
    """The size of ``path`` in bytes, after checking it against ``maximum``."""
    import os

    size = os.stat(path).st_size
    check_limit(str(path), limit, size, maximum)
    return size


def exceeds(what: str, value: object, limit: str, maximum: str) -> str:
    """The reason for breaking ``limit``, naming it, e.g.
    ``equation length 5000 exceeds limit 'equation length' (4096 characters)``."""
    return f"{what} {value} exceeds limit '{limit}' ({maximum})"


# ---------------------------------------------------------------------- quoting input in messages
class _ShortRepr(reprlib.Repr):
    """``reprlib`` cut to ``maximum`` characters, with a safe ``int``: Python refuses ``repr``
    of an int over 4300 digits."""

    def __init__(self, maximum: int) -> None:
        super().__init__()
        self.maxstring = self.maxother = self.maxlong = maximum

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 4 * MAX_QUOTED_CHARS:
            return f"<an integer of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


def shown(value: object, maximum: int = MAX_QUOTED_CHARS) -> str:
    """``repr(value)`` for an error message: one line of at most ``maximum`` characters (a long
    string keeps its start, its end and its quotes: ``'abcd...wxyz'``)."""
    try:
        text = _ShortRepr(maximum).repr(value)
    except Exception:  # a broken __repr__ must not turn a clean error into a traceback
        text = f"<{type(value).__name__}>"
    return clipped(text, maximum)


def clipped(text: str, maximum: int = MAX_QUOTED_CHARS) -> str:
    """``text`` for an error message: one line (each run of whitespace becomes one space, other
    unprintable characters are escaped), cut to at most ``maximum`` characters."""
    text = " ".join(str(text).split())
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    if len(text) > maximum:
        text = text[: max(maximum - 3, 0)] + "..."
    return text

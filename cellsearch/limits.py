"""The limits on every input a user hands us, in one place.

Cell files, space files, checkpoints and run files are data from outside: each reader checks
its input against the limit here before doing work whose cost grows with it, and breaking a
limit raises ``LimitError`` (for a cell file, a ``CellError`` with the file, node and line)
whose message names the limit (e.g. ``limit 'equation length'``), so a user knows which knob
they hit. The values are generous for any real cell or search and small enough that a hostile
file costs milliseconds and megabytes, not minutes and gigabytes. Messages quote the input
they refuse through ``shown``/``clipped``: one line, cut short, however large the input.

Every number a user sets (a training's sizes, budgets, seeds and threads, a task's options, a
search's trials, generation's beam and length) has an upper bound here too, checked by the
settings' own validation before any work starts (``check_number``), and a name that becomes a
file name is limited in bytes, as the file system counts (``check_file_name``, ``check_new_path``).
"""

from __future__ import annotations

import reprlib
from typing import cast

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

# ---------------------------------------------------------------------- training, search and evaluation settings
# Every number a user gives a training has an upper bound, checked by the validation every path
# goes through (``TrainConfig.validate``: train, a search's trials, evaluate/fidelity's
# retrainings, recipes, Python callers; ``SearchConfig.validate``; ``Protocol.validate``) before
# any work starts. The bounds are far above real work (NAS-Bench-NLP trains hidden 600, 3
# layers, batch 20, BPTT 70, 33,200 steps) and far below what would take terabytes or centuries.
MAX_BUDGETS = 16  # budgets on one fidelity curve (fidelity --budgets)
MAX_POPULATION = 1024  # members of one population (train --seeds/--lrs): their product is checked before training
MAX_HIDDEN_SIZE = 8192  # hidden_size and embed_size (--hidden, a recipe's hidden_size, bench -H/-I)
MAX_LAYERS = 64  # num_layers (--layers)
MAX_BATCH_SIZE = 16_384  # batch_size and eval_batch_size (--batch-size, bench -B)
MAX_STEPS = 100_000_000  # a step budget (--steps, --budget, fidelity --budgets) and every count of steps
MAX_TRAINING_SECONDS = 366 * 86_400  # a time budget (--minutes): a year
MAX_THREADS = 1024  # torch CPU threads (--threads, --cpus-per-trial)
MAX_SEED = 2**32 - 1  # a seed (--seed, --seeds): 32 bits, as numpy's; derived seeds stay far inside 64 bits
MAX_MEMORY_ROWS = 1024  # rows of an NTM memory state (--memory-rows)
MAX_SEQUENCE_LENGTH = 10_000  # time steps of one sequence: bptt, bench -T, export -T
MAX_TRIALS = 1_000_000  # candidates of one search (--trials)
MAX_PARALLEL = 1024  # concurrent trials or trainings (--parallel)
MAX_GPUS_PER_TRIAL = 64  # --gpus-per-trial
MAX_BENCH_ROUNDS = 1000  # bench --rounds
# A training's estimated memory (model, gradients, Adam's moments, one batch's activations and
# logits; a population: every member's) may take at most this share of the machine's physical
# memory: past it, the training is refused before anything is allocated (``cellsearch.training.memory_estimate``).
MAX_TRAINING_MEMORY_SHARE = 0.5

# ---------------------------------------------------------------------- task options (-t KEY=VALUE)
MAX_TASK_LENGTH = 1000  # symbols, digits or items of an algorithmic or memorisation sequence
MAX_ARITH_DIGITS = 64  # arith max_digits (the paper: 8)
MAX_DISTRACTORS = 64  # arith max_distractors between two characters
MAX_XML_STEPS = 1000  # xml max_steps (tags opened or closed in one document)
MAX_RECALL_ITEM_LENGTH = 32  # recall item_length
MAX_REPEATS = 9  # repeat-copy min_repeats/max_repeats (one digit in the prompt)
MAX_EVAL_EXAMPLES = 100_000  # eval_examples of a task of examples
MAX_BABI_TRAIN_EXAMPLES = 100_000  # babi train_examples (the paper: 1,000 and 10,000)
MAX_BABI_MEMORY = 200  # babi memory_size: sentences a question sees (the paper: 50)
MAX_EVAL_TOKENS = 2_000_000  # xml eval_chars, ptb eval_tokens (PTB's test split has 82,430)

# ---------------------------------------------------------------------- generation (cellsearch generate)
MAX_BEAM = 256  # --beam
MAX_TEMPERATURE = 1e4  # generate --temperature (far above, sampling is uniform already)
MAX_LENGTH_PENALTY = 10.0  # beam search's length penalty alpha (GNMT uses 0.6-1; larger overflows length ** alpha)
MAX_NEW_TOKENS = 100_000  # --length

# ---------------------------------------------------------------------- names that become file names
# In bytes of UTF-8, as the file system counts (255 a path component on Linux and macOS), with
# room left for the suffixes cellsearch adds (``.tmp``, ``-s0``, ``.md``): a run name, and every
# component of an output path that does not exist yet (--out, --output, --attention-map).
MAX_FILE_NAME_BYTES = 200

# ---------------------------------------------------------------------- error messages
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
        what, field = named(what)
        self.what = what
        self.limit = limit
        super().__init__(f"{what}: {value} exceeds limit '{limit}' ({maximum})", field=field)


def named(what: str) -> tuple[str, str | None]:
    """A checked setting's name as a message shows it and the field it is: ``"SearchConfig.trials"``
    is shown as ``trials`` and names that field (the command line shows its flag); any other text
    (``"run name"``) is shown as it is and names no field."""
    owner, dot, name = what.partition(".")
    if dot and owner.isidentifier() and name.isidentifier():
        return name, what
    return what, None


def check_limit(what: str, limit: str, value: int | float, maximum: int | float) -> None:
    """Raise ``LimitError`` when ``value > maximum`` (``what``: as ``named`` reads it)."""
    if value > maximum:
        raise LimitError(what, limit, value, maximum)


def check_number(what: str, value: object, low: int | float, limit: str | None = None,
                 maximum: int | float | None = None, *, integer: bool = True, low_open: bool = False) -> None:
    """Check that ``value`` is a number (an integer if ``integer``; finite; never a bool) of at least
    ``low`` (more than ``low`` if ``low_open``): a ``ConfigError`` naming ``what`` otherwise. Past
    ``maximum``, a ``LimitError`` naming ``limit``. ``what`` may be a field, ``"Record.field"``
    (``named``): the message then shows the field's name and the error names the field."""
    import math
    import numbers

    shown_as, field = named(what)

    kind = numbers.Integral if integer else numbers.Real
    well_typed = not isinstance(value, bool) and isinstance(value, kind) and math.isfinite(value)
    number = cast(float, value)  # compared only where well_typed holds: a finite real
    if integer:
        if not well_typed:
            raise ConfigError(f"{shown_as} must be an integer, not {shown(value)}", field=field)
        if number < low or (low_open and number == low):
            raise ConfigError(f"{shown_as} must be {'more than' if low_open else 'at least'} {low}, "
                              f"not {shown(value)}", field=field)
    elif not well_typed or number < low or (low_open and number == low):
        rule = "a positive number" if low_open and low == 0 else \
            f"a number {'>' if low_open else '>='} {low:g}"
        raise ConfigError(f"{shown_as} must be {rule}, not {shown(value)}", field=field)
    if maximum is not None:
        check_limit(what, limit or what, number, maximum)


def check_minutes(minutes: object, field: str = "SearchConfig.minutes") -> None:
    """Check a time budget given in minutes (``field``: the setting that holds it, or words, as
    ``check_number`` reads them): a positive number,
    at most the ``training time`` limit (the same limit a training checks its budget in seconds against)."""
    check_number(field, minutes, 0, "training time", MAX_TRAINING_SECONDS / 60, integer=False, low_open=True)


def name_bytes(name: str) -> int:
    """The length of ``name`` in bytes of UTF-8, as the file system counts a file name."""
    return len(name.encode("utf-8", "surrogatepass"))


def check_file_name(what: str, name: str) -> None:
    """Check a name that becomes a file or folder name against ``MAX_FILE_NAME_BYTES``."""
    size = name_bytes(name)
    if size > MAX_FILE_NAME_BYTES:
        what, field = named(what)
        error = LimitError(f"{what} {shown(name, 40)}", "file name length", f"{size} bytes",
                           f"{MAX_FILE_NAME_BYTES} bytes of UTF-8")
        error.fields = (field,) if field else ()
        raise error


def check_new_path(what: str, path) -> None:
    """Check every component of ``path`` that does not exist yet (what cellsearch would create)
    against ``MAX_FILE_NAME_BYTES``; components that exist are the file system's already."""
    import os
    from pathlib import Path

    path = Path(path)
    parts = path.parts
    for i, part in enumerate(parts):
        if part in (os.sep, ".", "..") or (i == 0 and path.anchor):
            continue
        prefix = Path(*parts[: i + 1])
        try:
            exists = os.path.lexists(prefix)
        except (OSError, ValueError):  # (a name the system refuses to look up)
            exists = False
        if not exists:
            check_file_name(what, part)


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

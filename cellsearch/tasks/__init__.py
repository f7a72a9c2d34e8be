"""Evaluation tasks: Arithmetic, XML, Memorization (synthetic, from a seed) and Penn Treebank."""

from __future__ import annotations

from typing import Any

from cellsearch.errors import ConfigError
from cellsearch.tasks.base import Batch, Stream, Task, Vocab

TASK_NAMES = ("arith", "xml", "memorize", "ptb")


def make_task(name: str, seed: int = 0, data_dir: str | None = None, **options: Any) -> Task:
    """Build a task by name; ``options`` go to its constructor (e.g. ``max_digits=4``)."""
    try:
        if name == "arith":
            from cellsearch.tasks.arithmetic import ArithmeticTask

            return ArithmeticTask(seed=seed, **options)
        if name == "xml":
            from cellsearch.tasks.xml import XMLTask

            return XMLTask(seed=seed, **options)
        if name == "memorize":
            from cellsearch.tasks.memorize import MemorizeTask

            return MemorizeTask(seed=seed, **options)
        if name == "ptb":
            from cellsearch.tasks.ptb import PTBTask

            return PTBTask(data_dir=data_dir, **options)
    except TypeError as exc:
        raise ConfigError(f"bad option for task '{name}': {exc}") from None
    raise ConfigError(f"unknown task '{name}' (known: {', '.join(TASK_NAMES)})")


__all__ = ["Batch", "Stream", "Task", "Vocab", "TASK_NAMES", "make_task"]

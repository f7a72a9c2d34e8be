"""Algorithmic sequence tasks (copy, repeat-copy, reverse, sort, reversed-digit addition, associative recall) scored at training length and beyond it.

Each example is a random sequence whose length is drawn from ``min_length``..``max_length``, read
in full, then the answer, as in every ``ExampleTask``:

* **copy** ``dacb=`` → ``dacb``; **reverse** ``dacb=`` → ``bcad``; **sort** ``dacb=`` → ``abcd``
  (``symbols`` letters; length = symbols read);
* **repeat-copy** (Graves et al. 2014): the sequence, ``#`` and the number of repeats (one digit,
  ``min_repeats``..``max_repeats``), then the sequence that many times (``dac#2=`` → ``dacdac``);
* **addition** with the digits least significant first, the order in which carries flow
  (``21+93=`` is 12 + 39 → ``15``, i.e. 51; length = digits per operand);
* **recall**, the associative recall of the Neural Turing Machine paper (Graves et al. 2014):
  items of ``item_length`` symbols separated by ``|``, then ``?`` and one of them (never the last);
  the answer is the item that followed it (``ab|cd|ef?cd=`` → ``ef``; length = items).

Metrics: teacher-forced per-character ``accuracy`` of the answer (the primary metric, smooth
enough to rank short trainings), greedy ``exact_match`` at training lengths, and
``exact_match_long``: greedy exact match on sequences longer than any seen in training, with
lengths in (``max_length``, ``long_factor`` × ``max_length``] (default 2×). A cell that learnt
the algorithm keeps its exact match there; one that learnt positions does not.
"""

from __future__ import annotations

import math
import random
import string
from abc import abstractmethod
from typing import Any

from cellsearch.errors import ConfigError
from cellsearch.limits import MAX_RECALL_ITEM_LENGTH, MAX_REPEATS, MAX_TASK_LENGTH, check_limit
from cellsearch.tasks.synthetic import ExampleTask

MAX_LENGTH = MAX_TASK_LENGTH  # longest sequence a task may be asked for (training or the long evaluation)


def _check(name: str, value: Any, low: float, high: float, integer: bool = True, limit: str | None = None) -> None:
    """``value`` in [low, high]; past ``high``, a ``LimitError`` naming ``limit`` when one is given."""
    kinds = (int,) if integer else (int, float)
    if limit is not None and not isinstance(value, bool) and isinstance(value, kinds) and math.isfinite(value) \
            and value > high >= low:
        check_limit(f"task option {name}", limit, value, high)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) \
            or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise ConfigError(f"task option {name} must be {what} between {low:g} and {high:g}, not {value!r}")


class AlgorithmicTask(ExampleTask):
    """A task whose prompt is a random sequence of a drawn length and whose answer is a function of it."""

    primary_metric = "accuracy"
    separators = "="

    def __init__(self, seed: int = 0, min_length: int = 1, max_length: int = 10, symbols: int = 8,
                 long_factor: float = 2.0, eval_examples: int | None = None):
        self.check_values({"min_length": min_length, "max_length": max_length, "symbols": symbols,
                           "long_factor": long_factor, "eval_examples": eval_examples})
        self.min_length, self.max_length, self.symbols = min_length, max_length, symbols
        self.long_factor = float(long_factor)
        self.letters = self.symbol_alphabet()
        self.alphabet = self.letters + self.separators
        super().__init__(seed, eval_examples)

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> None:
        _check("min_length", values["min_length"], cls.shortest, MAX_LENGTH, limit="task length")
        _check("max_length", values["max_length"], values["min_length"], MAX_LENGTH, limit="task length")
        _check("symbols", values["symbols"], 2, 26)
        _check("long_factor", values["long_factor"], 1, MAX_LENGTH / values["max_length"], integer=False)
        super().check_values(values)

    shortest = 1  # the shortest sequence a task can make

    @classmethod
    def longest_sequence(cls, values: dict[str, Any]) -> int:
        # generous for every task here: a prompt of max_length items (recall: of item_length symbols
        # and a separator each) and an answer no longer than the prompt, with <bos>/<eos>
        item = values.get("item_length", 1) + 1
        return 2 * (values["max_length"] * item + item + 2) + 2

    def symbol_alphabet(self) -> str:
        """The characters the sequences are made of (the first ``symbols`` letters by default)."""
        return string.ascii_lowercase[:self.symbols]

    @abstractmethod
    def example_of_length(self, rng: random.Random, length: int) -> tuple[str, str]:
        """One (prompt, answer) pair whose sequence has ``length`` (symbols, digits or items)."""

    def make_example(self, rng: random.Random) -> tuple[str, str]:
        return self.example_of_length(rng, rng.randint(self.min_length, self.max_length))

    @property
    def long_lengths(self) -> range:
        """The lengths of the long evaluation: beyond training, up to ``long_factor`` × ``max_length``."""
        return range(self.max_length + 1, int(self.long_factor * self.max_length) + 1)

    def long_example(self, rng: random.Random) -> tuple[str, str]:
        return self.example_of_length(rng, rng.choice(self.long_lengths))

    @property
    def long_examples(self) -> int:  # type: ignore[override]  # (greedy decoding: a prefix's worth)
        """As many long examples as exact match scores."""
        return min(self.eval_examples, self.exact_match_examples)

    def decoding_metrics(self, model, split: str) -> dict[str, float]:
        long = self.long_split(split)
        return {"exact_match_long": self.exact_match_rate(model, long) if long else float("nan")}

    def summarise(self, mean_nll: float, accuracy: float) -> dict[str, float]:
        return {"loss": mean_nll, "accuracy": accuracy}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "min_length": self.min_length, "max_length": self.max_length,
                "symbols": self.symbols, "long_factor": self.long_factor}


def _letters(rng: random.Random, letters: str, length: int) -> str:
    return "".join(rng.choice(letters) for _ in range(length))


class CopyTask(AlgorithmicTask):
    name = "copy"

    def example_of_length(self, rng: random.Random, length: int) -> tuple[str, str]:
        seq = _letters(rng, self.letters, length)
        return seq + "=", seq


class RepeatCopyTask(AlgorithmicTask):
    """The sequence, ``#``, the number of repeats (a digit), ``=``; the answer is the sequence repeated."""

    name = "repeat-copy"
    separators = "".join(str(k) for k in range(1, MAX_REPEATS + 1)) + "#="

    def __init__(self, seed: int = 0, min_length: int = 1, max_length: int = 10, symbols: int = 8,
                 min_repeats: int = 1, max_repeats: int = 3, long_factor: float = 2.0,
                 eval_examples: int | None = None):
        self.check_repeats({"min_repeats": min_repeats, "max_repeats": max_repeats, "max_length": max_length,
                            "long_factor": long_factor})
        self.min_repeats, self.max_repeats = min_repeats, max_repeats
        super().__init__(seed, min_length, max_length, symbols, long_factor, eval_examples)

    @classmethod
    def check_repeats(cls, values: dict[str, Any]) -> None:
        """The repeats in 1..``MAX_REPEATS`` (one digit), and the longest answer at most ``MAX_LENGTH``."""
        _check("min_repeats", values["min_repeats"], 1, MAX_REPEATS, limit="repeat-copy repeats")
        _check("max_repeats", values["max_repeats"], values["min_repeats"], MAX_REPEATS, limit="repeat-copy repeats")
        length, factor = values["max_length"], values["long_factor"]
        if isinstance(length, int) and isinstance(factor, (int, float)) and math.isfinite(factor) \
                and int(factor * length) * values["max_repeats"] > MAX_LENGTH:
            raise ConfigError(f"task option max_repeats: the longest answer (long_factor × max_length × max_repeats "
                              f"= {int(factor * length) * values['max_repeats']} symbols) must be at most {MAX_LENGTH}")

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> None:
        super().check_values(values)  # (lengths first: the answer's bound reads them)
        if "min_repeats" in values:  # (absent when __init__ checked them already, before the base class's check)
            cls.check_repeats(values)

    @classmethod
    def longest_sequence(cls, values: dict[str, Any]) -> int:
        # <bos>, the sequence, "#", the digit, "=", the answer, <eos>
        return values["max_length"] * (1 + values["max_repeats"]) + 5

    def example_of_length(self, rng: random.Random, length: int) -> tuple[str, str]:
        seq = _letters(rng, self.letters, length)
        repeats = rng.randint(self.min_repeats, self.max_repeats)
        return f"{seq}#{repeats}=", seq * repeats

    def config(self) -> dict[str, Any]:
        return {**super().config(), "min_repeats": self.min_repeats, "max_repeats": self.max_repeats}


class ReverseTask(AlgorithmicTask):
    name = "reverse"

    def example_of_length(self, rng: random.Random, length: int) -> tuple[str, str]:
        seq = _letters(rng, self.letters, length)
        return seq + "=", seq[::-1]


class SortTask(AlgorithmicTask):
    name = "sort"

    def example_of_length(self, rng: random.Random, length: int) -> tuple[str, str]:
        seq = _letters(rng, self.letters, length)
        return seq + "=", "".join(sorted(seq))


class AdditionTask(AlgorithmicTask):
    """Two numbers of ``length`` digits each, digits least significant first; their sum the same way."""

    name = "addition"
    separators = "+="

    def symbol_alphabet(self) -> str:
        return string.digits

    def example_of_length(self, rng: random.Random, length: int) -> tuple[str, str]:
        a, b = (_letters(rng, string.digits, length) for _ in range(2))
        total = int(a[::-1]) + int(b[::-1])
        return f"{a}+{b}=", str(total)[::-1]


class RecallTask(AlgorithmicTask):
    """Associative recall: ``length`` items of ``item_length`` symbols; the query's successor is the answer."""

    name = "recall"
    separators = "|?="

    shortest = 2  # a query needs a successor

    def __init__(self, seed: int = 0, min_length: int = 2, max_length: int = 6, symbols: int = 8,
                 item_length: int = 3, long_factor: float = 2.0, eval_examples: int | None = None):
        _check("item_length", item_length, 1, MAX_RECALL_ITEM_LENGTH, limit="recall item length")
        self.item_length = item_length
        super().__init__(seed, min_length, max_length, symbols, long_factor, eval_examples)

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> None:
        if "item_length" in values:  # (absent when __init__ checked it already, before the base class's check)
            _check("item_length", values["item_length"], 1, MAX_RECALL_ITEM_LENGTH, limit="recall item length")
        super().check_values(values)

    def example_of_length(self, rng: random.Random, length: int) -> tuple[str, str]:
        items = [_letters(rng, self.letters, self.item_length) for _ in range(length)]
        k = rng.randrange(length - 1)
        while items[k] in items[:k]:  # a repeated query would be ambiguous: ask the first of its kind
            k = items.index(items[k])
        return "|".join(items) + "?" + items[k] + "=", items[k + 1]

    def config(self) -> dict[str, Any]:
        return {**super().config(), "item_length": self.item_length}

"""Memorisation: read a few symbols, then reproduce them (the cheap first filter of the
Jozefowicz et al. 2015 search: a candidate must reach ≥ 95% accuracy to go on).

``qzbkd=`` → ``qzbkd``. Metric: per-character ``accuracy`` of the reproduction with
teacher forcing, and ``exact_match`` of greedy decoding.
"""

from __future__ import annotations

import random
import string
from typing import Any

from cellsearch.errors import ConfigError
from cellsearch.limits import MAX_TASK_LENGTH, check_number
from cellsearch.tasks.synthetic import ExampleTask


class MemorizeTask(ExampleTask):
    name = "memorize"
    primary_metric = "accuracy"

    def __init__(self, seed: int = 0, length: int = 5, symbols: int = 26, eval_examples: int | None = None):
        self.check_values({"length": length, "symbols": symbols})
        self.length = length
        self.symbols = symbols
        self.alphabet = string.ascii_lowercase[:symbols] + "="
        super().__init__(seed, eval_examples)

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> None:
        check_number(cls.option("length"), values.get("length"), 1, "task length", MAX_TASK_LENGTH)
        check_number(cls.option("symbols"), values.get("symbols"), 1)
        if values["symbols"] > 26:  # (the letters a-z)
            raise ConfigError(f"{cls.option('symbols')} must be between 1 and 26, not {values['symbols']}")
        super().check_values(values)

    @classmethod
    def longest_sequence(cls, values: dict[str, Any]) -> int:
        return 2 * values["length"] + 2

    def make_example(self, rng: random.Random) -> tuple[str, str]:
        seq = "".join(rng.choice(self.alphabet[:-1]) for _ in range(self.length))
        return seq + "=", seq

    def summarise(self, mean_nll: float, accuracy: float) -> dict[str, float]:
        return {"loss": mean_nll, "accuracy": accuracy}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "length": self.length, "symbols": self.symbols}

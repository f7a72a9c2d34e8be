"""Memorisation: read a few symbols, then reproduce them (the cheap first filter of the
Jozefowicz et al. 2015 search: a candidate must reach ≥ 95% accuracy to go on).

``qzbkd=`` → ``qzbkd``. Metric: per-character ``accuracy`` of the reproduction with
teacher forcing, and ``exact_match`` of greedy decoding.
"""

from __future__ import annotations

import random
import string
from typing import Any

from cellsearch.tasks.synthetic import ExampleTask


class MemorizeTask(ExampleTask):
    name = "memorize"
    primary_metric = "accuracy"

    def __init__(self, seed: int = 0, length: int = 5, symbols: int = 26, eval_examples: int | None = None):
        if not 1 <= symbols <= 26:
            raise ValueError("symbols must be between 1 and 26")
        self.length = length
        self.symbols = symbols
        self.alphabet = string.ascii_lowercase[:symbols] + "="
        super().__init__(seed, eval_examples)

    def make_example(self, rng: random.Random) -> tuple[str, str]:
        seq = "".join(rng.choice(self.alphabet[:-1]) for _ in range(self.length))
        return seq + "=", seq

    def summarise(self, mean_nll: float, accuracy: float) -> dict[str, float]:
        return {"loss": mean_nll, "accuracy": accuracy}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "length": self.length, "symbols": self.symbols}

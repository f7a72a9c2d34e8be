"""Arithmetic (Jozefowicz et al. 2015): read ``a±b`` with distractor letters, emit the result.

``3e36d9-h1h39f94eeh43keg3c=`` → ``-13991064``. Numbers have 1..max_digits digits (paper:
up to 8), the operator is + or - with equal probability, and between successive input
characters a random number (0..max_distractors) of letters is inserted. Metrics: per-character
accuracy of the answer with teacher forcing (``char_accuracy``, the paper's measure) and
``exact_match`` of greedy free-running decoding.
"""

from __future__ import annotations

import random
import string
from typing import Any

from cellsearch.tasks.synthetic import ExampleTask

DIGITS = "0123456789"
DISTRACTORS = string.ascii_lowercase


class ArithmeticTask(ExampleTask):
    name = "arith"
    primary_metric = "char_accuracy"
    alphabet = DIGITS + "+-=" + DISTRACTORS

    def __init__(self, seed: int = 0, max_digits: int = 8, max_distractors: int = 3,
                 eval_examples: int | None = None):
        if max_digits < 1:
            raise ValueError("max_digits must be at least 1")
        self.max_digits = max_digits
        self.max_distractors = max_distractors
        super().__init__(seed, eval_examples)

    def number(self, rng: random.Random) -> int:
        digits = rng.randint(1, self.max_digits)
        return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10 ** digits - 1)

    def make_example(self, rng: random.Random) -> tuple[str, str]:
        a, b = self.number(rng), self.number(rng)
        op = rng.choice("+-")
        result = a + b if op == "+" else a - b
        plain = f"{a}{op}{b}="
        prompt = []
        for i, ch in enumerate(plain):
            if i > 0:
                prompt.append("".join(rng.choice(DISTRACTORS) for _ in range(rng.randint(0, self.max_distractors))))
            prompt.append(ch)
        return "".join(prompt), str(result)

    def summarise(self, mean_nll: float, accuracy: float) -> dict[str, float]:
        return {"loss": mean_nll, "char_accuracy": accuracy}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "max_digits": self.max_digits, "max_distractors": self.max_distractors}


def solve(prompt: str) -> int:
    """The answer of a prompt, ignoring distractors (used by tests to check the generator)."""
    plain = "".join(ch for ch in prompt if ch not in DISTRACTORS).rstrip("=")
    op_pos = max(plain.rfind("+"), plain.rfind("-"))
    a, op, b = int(plain[:op_pos]), plain[op_pos], int(plain[op_pos + 1:])
    return a + b if op == "+" else a - b

"""Arithmetic (Jozefowicz et al. 2015): read ``a±b`` with distractor letters, emit the result.

``3e36d9-h1h39f94eeh43keg3c=`` → ``-13991064``. Numbers have 1..max_digits digits (paper:
up to 8), the operator is + or - with equal probability, and between successive input
characters a random number (0..max_distractors) of letters is inserted. Metrics: per-character
accuracy of the answer with teacher forcing (``char_accuracy``, the paper's measure) and
``exact_match`` of greedy free-running decoding.
"""

from __future__ import annotations

import operator
import random
import string
from typing import Any

from cellsearch.errors import ConfigError
from cellsearch.limits import MAX_ARITH_DIGITS, MAX_DISTRACTORS, check_number, shown
from cellsearch.tasks.synthetic import ExampleTask

DIGITS = "0123456789"
DISTRACTORS = string.ascii_lowercase


class ArithmeticTask(ExampleTask):
    name = "arith"
    primary_metric = "char_accuracy"
    alphabet = DIGITS + "+-=" + DISTRACTORS

    def __init__(self, seed: int = 0, max_digits: int = 8, max_distractors: int = 3,
                 eval_examples: int | None = None):
        self.check_values({"max_digits": max_digits, "max_distractors": max_distractors})
        # (the draws below take exact integers: numpy's too, not 3.0)
        self.max_digits = operator.index(max_digits)
        self.max_distractors = operator.index(max_distractors)
        super().__init__(seed, eval_examples)

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> None:
        digits: Any = values.get("max_digits")  # whatever the user wrote: checked here
        distractors: Any = values.get("max_distractors")
        try:
            operator.index(digits), operator.index(distractors)
        except TypeError:
            raise ConfigError(f"bad option for task 'arith': max_digits and max_distractors must be integers, got "
                              f"{shown(digits)} and {shown(distractors)}") from None
        check_number(cls.option("max_digits"), digits, 1, "arith digits", MAX_ARITH_DIGITS)
        check_number(cls.option("max_distractors"), distractors, 0, "arith distractors", MAX_DISTRACTORS)
        super().check_values(values)

    @classmethod
    def longest_sequence(cls, values: dict[str, Any]) -> int:
        plain = 2 * values["max_digits"] + 2  # a op b =
        prompt = plain + (plain - 1) * values["max_distractors"]
        return prompt + values["max_digits"] + 2 + 1  # the answer (sign, carry) and <bos>/<eos>

    # The examples draw through ``Random._randbelow`` directly: ``randint(a, b)`` is
    # ``a + _randbelow(b - a + 1)`` and ``choice(s)`` is ``s[_randbelow(len(s))]`` in CPython, so the
    # stream is the one those calls give (tests/tasks/test_tasks.py checks it against them) at about
    # 60% of the cost, which at search sizes is a tenth of a training step.
    def number(self, rng: random.Random) -> int:
        """An operand: its number of digits uniform in 1..max_digits, then the value uniform among those."""
        below = rng._randbelow  # type: ignore[attr-defined]  # CPython's, absent from the stubs (see above)
        digits = 1 + below(self.max_digits)
        low = 0 if digits == 1 else 10 ** (digits - 1)
        return low + below(10 ** digits - low)

    def make_example(self, rng: random.Random) -> tuple[str, str]:
        a, b = self.number(rng), self.number(rng)
        below = rng._randbelow  # type: ignore[attr-defined]  # CPython's, absent from the stubs (see above)
        op = "+-"[below(2)]
        result = a + b if op == "+" else a - b
        plain = f"{a}{op}{b}="
        prompt = [plain[0]]
        n_letters, spread = len(DISTRACTORS), self.max_distractors + 1
        for ch in plain[1:]:
            prompt.extend([DISTRACTORS[below(n_letters)] for _ in range(below(spread))])
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

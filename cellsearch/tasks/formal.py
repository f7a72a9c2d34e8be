"""Joulin & Mikolov's algorithmic patterns (aⁿbⁿ, aⁿbⁿcⁿ, aⁿbᵐcⁿ⁺ᵐ, string memorisation, binary addition) as sequence prediction, deterministic part scored.

Joulin & Mikolov (2015, "Inferring algorithmic patterns with stack-augmented recurrent nets")
let a model read sequences of a formal language and predict the next symbol; only the
predictions that the sequence so far fixes count. Each example here is ``<bos> sequence <eos>``
(read from an empty state: they read a continuous stream of such sequences, we start each one
afresh, so the end of a sequence is the ``<eos>`` prediction), and the scored part is what
follows the prompt, ``<eos>`` included:

* **anbn** aⁿbⁿ: prompt ``aⁿb`` (the first b cannot be foreseen), answer ``bⁿ⁻¹``;
* **anbncn** aⁿbⁿcⁿ: prompt ``aⁿb``, answer ``bⁿ⁻¹cⁿ``;
* **anbmcnm** aⁿbᵐcⁿ⁺ᵐ: prompt ``aⁿbᵐc``, answer ``cⁿ⁺ᵐ⁻¹`` (n and m drawn apart);
* **string-memorization**: a random string w over {a, b} of length n, a separator ``c``, then w
  reversed: prompt ``w c``, answer reverse(w) (their memorisation task as we recall its format:
  the string comes back in reverse, the order a stack gives it back in);
* **binary-addition**: two binary numbers of n bits each, most significant bit first, ``+``
  between and ``=`` after, then their sum least significant bit first (as we recall their
  format: the sum reversed, the order its bits can be computed in from stacks of the operands),
  e.g. ``110+011=0011`` is 6 + 3 = 9.

Their protocol: train with n (both n and m for anbmcnm) in [``min_n``, ``max_n``] and test above
the bound. The metrics are teacher-forced (one pass, no decoding): ``accuracy``, the fraction of
deterministic symbols predicted right at training lengths (the primary metric), and
``sequence_accuracy``, the fraction of sequences whose deterministic predictions are all right
(which is also the greedy exact match: a model right at every scored position reproduces the
answer free-running); ``accuracy_long`` and ``sequence_accuracy_long`` the same on sequences with
n in (``max_n``, ``long_factor`` × ``max_n``], longer than any seen in training.
"""

from __future__ import annotations

import random
from abc import abstractmethod
from collections import defaultdict
from typing import Any

import torch

from cellsearch.tasks.algorithmic import MAX_LENGTH, _check
from cellsearch.tasks.base import Batch, start_state
from cellsearch.tasks.synthetic import ExampleTask


class FormalTask(ExampleTask):
    """A formal language of sequences with a length n; the deterministic part after the prompt is scored."""

    primary_metric = "accuracy"
    exact_match = False  # (sequence_accuracy is the greedy exact match, teacher-forced: see the module docstring)
    eval_examples = 500
    alphabet = "ab"

    def __init__(self, seed: int = 0, min_n: int = 1, max_n: int = 10, long_factor: float = 2.0,
                 eval_examples: int | None = None):
        self.check_values({"min_n": min_n, "max_n": max_n, "long_factor": long_factor,
                           "eval_examples": eval_examples})
        self.min_n, self.max_n, self.long_factor = min_n, max_n, float(long_factor)
        super().__init__(seed, eval_examples)

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> None:
        _check("min_n", values["min_n"], 1, MAX_LENGTH, limit="task length")
        _check("max_n", values["max_n"], values["min_n"], MAX_LENGTH, limit="task length")
        _check("long_factor", values["long_factor"], 1, MAX_LENGTH / values["max_n"], integer=False)
        super().check_values(values)

    @classmethod
    def longest_sequence(cls, values: dict[str, Any]) -> int:
        return cls.symbols_per_n * values["max_n"] + 3  # (with <bos>/<eos> and a separator)

    symbols_per_n = 3  # at most this many symbols per unit of n (aⁿbᵐcⁿ⁺ᵐ: 4 with n = m; set there)

    @abstractmethod
    def example(self, rng: random.Random, lengths: range) -> tuple[str, str]:
        """One (prompt, answer) pair with n (and m) drawn from ``lengths``."""

    def make_example(self, rng: random.Random) -> tuple[str, str]:
        return self.example(rng, range(self.min_n, self.max_n + 1))

    @property
    def long_lengths(self) -> range:
        """The n of the long evaluation: beyond training, up to ``long_factor`` × ``max_n``."""
        return range(self.max_n + 1, int(self.long_factor * self.max_n) + 1)

    def long_example(self, rng: random.Random) -> tuple[str, str]:
        return self.example(rng, self.long_lengths)

    @property
    def long_examples(self) -> int:  # type: ignore[override]  # (every evaluation example's worth)
        """As many long examples as the evaluation has."""
        return self.eval_examples

    def extra_metrics(self, examples, batch: Batch, predictions: torch.Tensor, correct: torch.Tensor) -> dict:
        whole = (correct | ~batch.mask).all(0)  # (B,): every scored prediction right
        return {"sequence_accuracy": (float(whole.sum()), float(whole.numel()))}

    @torch.no_grad()
    def decoding_metrics(self, model, split: str) -> dict[str, float]:
        long = self.long_split(split)
        if not long:
            return {"accuracy_long": float("nan"), "sequence_accuracy_long": float("nan")}
        device = next(model.parameters()).device
        sums: dict[str, float] = defaultdict(float)
        for i in range(0, len(long), 128):
            chunk = long[i:i + 128]
            batch = self.encode(chunk).to(device)
            logits, _ = model(batch.inputs, start_state(model, batch))
            correct = (logits.argmax(-1) == batch.targets) & batch.mask
            sums["right"] += float(correct.sum())
            sums["scored"] += float(batch.mask.sum())
            sums["whole"] += float((correct | ~batch.mask).all(0).sum())
        return {"accuracy_long": sums["right"] / max(sums["scored"], 1.0),
                "sequence_accuracy_long": sums["whole"] / len(long)}

    def summarise(self, mean_nll: float, accuracy: float) -> dict[str, float]:
        return {"loss": mean_nll, "accuracy": accuracy}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "min_n": self.min_n, "max_n": self.max_n, "long_factor": self.long_factor}


class AnbnTask(FormalTask):
    """aⁿbⁿ: after the first b, the other n − 1 b's and the end are determined."""

    name = "anbn"
    symbols_per_n = 2

    def example(self, rng: random.Random, lengths: range) -> tuple[str, str]:
        n = rng.choice(lengths)
        return "a" * n + "b", "b" * (n - 1)


class AnbncnTask(FormalTask):
    """aⁿbⁿcⁿ: after the first b, the other b's, the c's and the end are determined."""

    name = "anbncn"
    alphabet = "abc"

    def example(self, rng: random.Random, lengths: range) -> tuple[str, str]:
        n = rng.choice(lengths)
        return "a" * n + "b", "b" * (n - 1) + "c" * n


class AnbmcnmTask(FormalTask):
    """aⁿbᵐcⁿ⁺ᵐ: after the first c, the other n + m − 1 c's and the end are determined."""

    name = "anbmcnm"
    alphabet = "abc"
    symbols_per_n = 4

    def example(self, rng: random.Random, lengths: range) -> tuple[str, str]:
        n, m = rng.choice(lengths), rng.choice(lengths)
        return "a" * n + "b" * m + "c", "c" * (n + m - 1)


class StringMemorizationTask(FormalTask):
    """A random string over {a, b}, the separator c, the string reversed (determined after c)."""

    name = "string-memorization"
    alphabet = "abc"
    symbols_per_n = 2

    def example(self, rng: random.Random, lengths: range) -> tuple[str, str]:
        w = "".join(rng.choice("ab") for _ in range(rng.choice(lengths)))
        return w + "c", w[::-1]


class BinaryAdditionTask(FormalTask):
    """Two n-bit numbers, most significant bit first, then their sum least significant bit first."""

    name = "binary-addition"
    alphabet = "01+="
    symbols_per_n = 3

    @classmethod
    def longest_sequence(cls, values: dict[str, Any]) -> int:
        # <bos>, two n-bit operands with "+" and "=", a sum of up to n + 1 bits, <eos>: 3n + 5 tokens
        return 3 * values["max_n"] + 4

    def example(self, rng: random.Random, lengths: range) -> tuple[str, str]:
        n = rng.choice(lengths)
        a, b = ("".join(rng.choice("01") for _ in range(n)) for _ in range(2))
        total = format(int(a, 2) + int(b, 2), "b").zfill(n)
        return f"{a}+{b}=", total[::-1]


TASKS = (AnbnTask, AnbncnTask, AnbmcnmTask, StringMemorizationTask, BinaryAdditionTask)

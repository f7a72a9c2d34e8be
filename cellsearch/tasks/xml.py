"""XML modelling (Jozefowicz et al. 2015): next-character prediction on random nested tags.

A document starts by opening a tag; then at every step, with probability ½ the innermost
open tag is closed (the document ends when none is left open), otherwise a new tag of 2–10
random lowercase letters is opened. After ``max_steps`` steps every open tag is closed. One
tag per line, indented by two spaces per depth. Opening tags are random, so accuracy over
all characters is capped near 0.5; closing tags (after ``</``) are predictable.

Metrics: ``accuracy`` over all characters, ``predictable_accuracy`` over the characters of
closing tags after ``</`` (name and ``>``), and ``bpc`` (bits per character).
"""

from __future__ import annotations

import random
import string
from typing import Any

from cellsearch.tasks.synthetic import ExampleTask


def make_document(rng: random.Random, max_steps: int = 50, min_len: int = 2, max_len: int = 10) -> str:
    lines: list[str] = []
    stack: list[str] = []

    def open_tag() -> None:
        name = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(min_len, max_len)))
        lines.append("  " * len(stack) + f"<{name}>")
        stack.append(name)

    def close_tag() -> None:
        name = stack.pop()
        lines.append("  " * len(stack) + f"</{name}>")

    open_tag()
    for _ in range(max_steps):
        if not stack:
            break
        if rng.random() < 0.5:
            close_tag()
        else:
            open_tag()
    while stack:
        close_tag()
    return "\n".join(lines) + "\n"


def predictable_positions(doc: str) -> list[bool]:
    """For each character of the document: is it inside a closing tag after ``</``?"""
    flags = [False] * len(doc)
    i = 0
    while True:
        i = doc.find("</", i)
        if i < 0:
            return flags
        j = doc.index(">", i)
        for k in range(i + 2, j + 1):
            flags[k] = True
        i = j


class XMLTask(ExampleTask):
    name = "xml"
    primary_metric = "accuracy"
    alphabet = string.ascii_lowercase + "<>/ \n"
    exact_match = False

    def __init__(self, seed: int = 0, max_steps: int = 50, eval_examples: int | None = None):
        self.max_steps = max_steps
        super().__init__(seed, eval_examples if eval_examples is not None else 300)

    def make_example(self, rng: random.Random) -> tuple[str, str]:
        return "", make_document(rng, self.max_steps)

    def extra_metrics(self, examples, batch, predictions, correct) -> dict:
        mask = batch.mask.clone()
        mask.zero_()
        for b, (_, doc) in enumerate(examples):
            # target position p predicts doc[p] (position 0 predicts the first character)
            flags = predictable_positions(doc)
            for p, flag in enumerate(flags):
                if flag:
                    mask[p, b] = True
        return {"predictable_accuracy": (float((correct & mask).sum()), float(mask.sum()))}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "max_steps": self.max_steps}

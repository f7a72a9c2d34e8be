"""XML modelling (Jozefowicz et al. 2015): next-character prediction on random nested tags.

A document starts by opening a tag; then at every step, with probability ½ the innermost
open tag is closed (the document ends when none is left open), otherwise a new tag of 2–10
random lowercase letters is opened. After ``max_steps`` steps every open tag is closed. One
tag per line, indented by two spaces per depth. Opening tags are random, so accuracy over
all characters is capped near 0.5; closing tags (after ``</``) are predictable.

Documents are concatenated into character streams read with truncated BPTT (``bptt``
characters per batch, state carried), as the paper's language-model tasks are: documents
are long (up to a few hundred characters) and a whole-document batch would be mostly padding.
Metrics on a fixed validation stream of ``eval_chars`` characters: ``accuracy`` over all
characters, ``predictable_accuracy`` over the characters of closing tags after ``</`` (name
and ``>``), and ``bpc`` (bits per character).
"""

from __future__ import annotations

import random
import string
from typing import Any

import torch

from cellsearch.limits import MAX_EVAL_TOKENS, MAX_SEQUENCE_LENGTH, MAX_XML_STEPS, check_number
from cellsearch.tasks.base import Batch, Stream, Task, Vocab, bits
from cellsearch.tasks.streams import evaluate_stream
from cellsearch.tasks.synthetic import SPLIT_OFFSETS

ALPHABET = string.ascii_lowercase + "<>/ \n"


def make_document(rng: random.Random, max_steps: int = 50, min_len: int = 2, max_len: int = 10) -> str:
    """A random well-nested XML document: a random walk of up to ``max_steps`` opening (random
    lower-case names of ``min_len`` to ``max_len`` letters) and closing tags, one tag per indented line,
    then every open tag closed."""
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


class XMLTask(Task):
    name = "xml"
    primary_metric = "accuracy"

    vocab_bound = len(ALPHABET)
    EVAL_BATCH = 16  # at most this many columns of the validation stream are read at once

    def __init__(self, seed: int = 0, max_steps: int = 50, bptt: int = 35, eval_chars: int = 20_000):
        self.check_values({"max_steps": max_steps, "bptt": bptt, "eval_chars": eval_chars})
        self.seed = seed
        self.max_steps = max_steps
        self.bptt = bptt
        self.eval_chars = eval_chars
        self.vocab = Vocab(list(ALPHABET), specials=())
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> None:
        check_number(cls.option("max_steps"), values["max_steps"], 1, "xml steps", MAX_XML_STEPS)
        check_number(cls.option("bptt"), values["bptt"], 1, "sequence length", MAX_SEQUENCE_LENGTH)
        # the evaluation reads the stream in EVAL_BATCH columns of at least two characters
        check_number(cls.option("eval_chars"), values["eval_chars"], 2 * cls.EVAL_BATCH, "evaluation tokens",
                     MAX_EVAL_TOKENS)

    @classmethod
    def longest_sequence(cls, values: dict[str, Any]) -> int:
        return values["bptt"]

    def document(self, rng: random.Random) -> str:
        """One document of this task (see ``make_document``)."""
        return make_document(rng, self.max_steps)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed (ids, predictable flags) stream of a split."""
        if name not in SPLIT_OFFSETS:
            raise ValueError(f"unknown split {name!r} (valid or test)")
        if name not in self._splits:
            rng = random.Random(self.seed * 7919 + SPLIT_OFFSETS[name])
            text: list[str] = []
            flags: list[bool] = []
            while len(text) < self.eval_chars:
                doc = self.document(rng)
                text.extend(doc)
                flags.extend(predictable_positions(doc))
            self._splits[name] = (torch.tensor(self.vocab.encode(text[: self.eval_chars])),
                                  torch.tensor(flags[: self.eval_chars]))
        return self._splits[name]

    def train_stream(self, batch_size: int, seed: int) -> Stream:
        return _DocumentStream(self, batch_size, seed)

    def evaluate(self, model, split: str = "valid", batch_size: int = 16) -> dict[str, float]:
        ids, flags = self.split(split)
        m = evaluate_stream(model, ids, min(batch_size, self.EVAL_BATCH), self.bptt, flags)
        return {"loss": m["loss"], "accuracy": m["accuracy"], "predictable_accuracy": m["flagged_accuracy"],
                "bpc": bits(m["loss"])}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "max_steps": self.max_steps, "bptt": self.bptt,
                "eval_chars": self.eval_chars}


class _DocumentStream(Stream):
    """``batch_size`` endless character streams of concatenated documents, ``bptt`` at a time."""

    def __init__(self, task: XMLTask, batch_size: int, seed: int):
        self.task = task
        self.batch_size = batch_size
        self.rng = random.Random(seed)
        self.buffers = [""] * batch_size
        self.started = False

    def __next__(self) -> Batch:
        T = self.task.bptt
        for b in range(self.batch_size):
            while len(self.buffers[b]) < T + 1:
                self.buffers[b] += self.task.document(self.rng)
        ids = torch.tensor([self.task.vocab.encode(buf[: T + 1]) for buf in self.buffers]).t()  # (T+1, B)
        self.buffers = [buf[T:] for buf in self.buffers]
        carry, self.started = self.started, True
        return Batch(ids[:-1], ids[1:], torch.ones(T, self.batch_size, dtype=torch.bool), carry_state=carry)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "buffers": list(self.buffers), "started": self.started}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        self.buffers = list(state["buffers"])
        self.started = state["started"]

"""Captioning the handwritten digits (``digits-caption``): read an 8×8 image, write the digit's name ("seven").

The images and their fixed train/valid/test split are ``cellsearch.tasks.digits``'s. An example's
prompt is the image as 64 characters, its pixels row by row (top row first, left to right), grey
level k written as the k-th capital letter (0 → ``A`` … 16 → ``Q``); its answer is the class's
English name in lower case. In the seq2seq layout (``cellsearch train attn-gru --task
digits-caption``: a decoder that attends, with the default encoder) the encoder reads the 64 pixels,
so the memory the decoder attends to has one row per pixel and its attention over the memory is a
map over the 8×8 image (``cellsearch generate --test-image N --attention-map map.png``); in the
language-model layout a plain cell reads ``<bos>``, the pixels, then writes the name.

Training examples are images drawn uniformly with replacement from the training set; the validation
and test sets are the 250 held-out images of each split (``eval_examples`` takes the first N).
Metrics: per-character ``accuracy`` of the name with teacher forcing (the primary metric),
``exact_match`` of the greedily decoded name (the digit recognised and spelt right), ``loss``, ``bpc``.
"""

from __future__ import annotations

import random
import string
from typing import Any

import torch

from cellsearch.tasks.digits import NAMES, SPLIT_SIZES, check_split, digit_splits
from cellsearch.tasks.synthetic import ExampleTask

PIXEL_CHARS = string.ascii_uppercase[:17]  # grey level k → PIXEL_CHARS[k]


def image_text(pixels: torch.Tensor) -> str:
    """An image's 64 grey levels (row by row) as the task's prompt."""
    return "".join(PIXEL_CHARS[int(level)] for level in pixels.reshape(-1).tolist())


class DigitsCaptionTask(ExampleTask):
    """Name the digit in an 8×8 image, character by character (see module docstring)."""

    name = "digits-caption"
    primary_metric = "accuracy"
    eval_examples = SPLIT_SIZES["valid"]
    exact_match_examples = SPLIT_SIZES["valid"]

    def __init__(self, seed: int = 0, eval_examples: int | None = None):
        self.alphabet = PIXEL_CHARS + "".join(sorted(set("".join(NAMES))))
        self.data = digit_splits()
        super().__init__(seed, eval_examples)

    @classmethod
    def longest_sequence(cls, values: dict[str, Any]) -> int:
        return 64 + max(map(len, NAMES)) + 2

    def example(self, split: str, index: int) -> tuple[str, str]:
        """Image ``index`` of ``split`` as (its pixels as text, its name)."""
        pixels, classes = self.data[split]
        return image_text(pixels[index]), NAMES[int(classes[index])]

    def make_example(self, rng: random.Random) -> tuple[str, str]:
        return self.example("train", rng.randrange(SPLIT_SIZES["train"]))

    def split(self, name: str) -> list[tuple[str, str]]:
        """The held-out images of split ``name`` (valid or test; the first ``eval_examples``)."""
        if name not in ("valid", "test"):
            check_split(name)
            raise ValueError(f"unknown split {name!r} (valid or test)")
        if name not in self._splits:
            count = min(self.eval_examples, SPLIT_SIZES[name])
            self._splits[name] = [self.example(name, i) for i in range(count)]
        return self._splits[name]

"""Pixel-by-pixel image modelling on scikit-learn's handwritten digits (``digits``), and the digits data set itself.

The data: ``sklearn.datasets.load_digits`` (shipped inside scikit-learn, nothing is downloaded),
1,797 images of 8×8 pixels, each pixel a grey level 0..16, with the digit's class 0..9. The split
is fixed (the same for every seed and machine): the images are permuted by
``numpy.random.RandomState(0).permutation(1797)`` (numpy's legacy generator, whose stream never
changes), the first 1,297 are the training set, the next 250 validation, the last 250 test.

The task: an image is a sequence of 64 tokens, its pixels row by row (top row first, left to right),
each pixel's grey level a token ("0".."16"; the vocabulary is ``<bos>`` and the 17 levels). The
model reads ``<bos>`` and the pixels and predicts every next pixel; all 64 are scored. Metrics on
the held-out images: ``bits_per_pixel`` (the mean NLL per pixel in bits), ``loss`` (nats) and the
primary metric ``pixel_prob`` = 2^−bits_per_pixel, the geometric mean of the probability given to
each pixel (higher is better, as PTB's ``word_prob``).

``conditional=true``: each image's class conditions the model as a static input (the class enters
every step: ``SeqModel``'s ``Conditioned`` state, ``Batch.condition``): p(image | class). Training
batches draw images uniformly with replacement from the training set, from a ``random.Random``
seeded by the training's seed (its state is the stream's whole state: resuming is exact).
"""

from __future__ import annotations

import math
import random
from functools import lru_cache
from typing import Any

import torch

from cellsearch.errors import ConfigError
from cellsearch.tasks.base import Batch, Stream, Task, Vocab, bits, start_state

SIDE = 8  # an image is SIDE × SIDE pixels
PIXELS = SIDE * SIDE
LEVELS = 17  # grey levels 0..16
CLASSES = 10
NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLIT_SIZES = {"train": 1297, "valid": 250, "test": 250}
SPLIT_SEED = 0
INSTALL = "scikit-learn is missing: pip install scikit-learn (or install cellsearch with the search extra)"


@lru_cache(maxsize=1)
def digit_splits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The fixed splits (see module docstring): split name → (pixels (N, 64) long grey levels 0..16,
    row by row; classes (N,) long). ConfigError (one line saying what to install) without scikit-learn."""
    import numpy as np

    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError(INSTALL) from None
    data = load_digits()
    pixels = torch.from_numpy(np.rint(data.data).astype("int64"))  # (1797, 64), already row-major
    classes = torch.from_numpy(data.target.astype("int64"))
    order = torch.from_numpy(np.random.RandomState(SPLIT_SEED).permutation(len(classes)))
    splits, start = {}, 0
    for name, size in SPLIT_SIZES.items():
        index = order[start:start + size]
        splits[name] = (pixels[index].contiguous(), classes[index].contiguous())
        start += size
    return splits


def check_split(name: str) -> None:
    """ConfigError unless ``name`` is a split of the digits."""
    if name not in SPLIT_SIZES:
        raise ConfigError(f"unknown digits split '{name}'; choose one of {', '.join(SPLIT_SIZES)}")


class DigitsTask(Task):
    """Pixel-by-pixel generation of 8×8 digits, unconditional or given the class (see module docstring)."""

    name = "digits"
    primary_metric = "pixel_prob"
    vocab_bound = LEVELS + 1

    def __init__(self, seed: int = 0, conditional: bool = False):
        self.check_values({"conditional": conditional})
        self.seed = seed  # (the split is fixed; the training stream has its own seed)
        self.conditional = conditional
        self.condition_classes = CLASSES if conditional else 0
        self.vocab = Vocab([str(level) for level in range(LEVELS)], specials=("<bos>",))
        self.data = digit_splits()

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> None:
        if not isinstance(values["conditional"], bool):
            raise ConfigError(f"{cls.option('conditional')} must be true or false, not {values['conditional']!r:.40}")

    @classmethod
    def longest_sequence(cls, values: dict[str, Any]) -> int:
        return PIXELS

    def level_ids(self) -> int:
        """The id of grey level 0 (level k is this + k)."""
        return self.vocab.id("0")

    def batch(self, pixels: torch.Tensor, classes: torch.Tensor) -> Batch:
        """Images (B, 64) and their classes (B,) as one batch: inputs ``<bos>`` and pixels 0..62,
        targets pixels 0..63, all scored (with the classes as the condition when conditional)."""
        ids = (pixels + self.level_ids()).t()  # (64, B)
        inputs = torch.cat([ids.new_full((1, ids.shape[1]), self.vocab.bos), ids[:-1]])
        mask = torch.ones(ids.shape, dtype=torch.bool)
        return Batch(inputs, ids.contiguous(), mask, condition=classes if self.conditional else None)

    def train_stream(self, batch_size: int, seed: int) -> Stream:
        return _DigitsStream(self, batch_size, seed)

    @torch.no_grad()
    def evaluate(self, model, split: str = "valid", batch_size: int = 128) -> dict[str, float]:
        check_split(split)
        pixels, classes = self.data[split]
        was_training = model.training
        model.eval()
        try:
            device = next(model.parameters()).device
            nll_sum, count = 0.0, 0
            for i in range(0, len(classes), batch_size):
                batch = self.batch(pixels[i:i + batch_size], classes[i:i + batch_size]).to(device)
                logits, _ = model(batch.inputs, start_state(model, batch))
                nll, n = self.masked_nll(logits, batch.targets, batch.mask)
                nll_sum += float(nll)
                count += n
        finally:
            model.train(was_training)
        loss = nll_sum / max(count, 1)
        return {"pixel_prob": math.exp(-loss), "bits_per_pixel": bits(loss), "loss": loss}

    @torch.no_grad()
    def sample_images(self, model, count: int, classes: torch.Tensor | None = None, temperature: float = 1.0,
                      generator: torch.Generator | None = None, top_k: int | None = None) -> torch.Tensor:
        """``count`` images sampled pixel by pixel (B, 8, 8) grey levels; a conditional model draws
        image b of class ``classes[b]`` (``count`` = len(classes))."""
        from cellsearch.nn.decoding import sample

        state = None
        if self.conditional:
            if classes is None or len(classes) != count:
                raise ConfigError("a conditional digits model samples images of given classes, one per image")
            state = model.condition(classes.to(next(model.parameters()).device))
        prompt = torch.full((1, count), self.vocab.bos, dtype=torch.long)
        # (only levels: the one other token, <bos>, gets no probability; a model that still draws it draws 0)
        ids = sample(model, prompt, PIXELS, temperature, top_k, None, generator, state)  # (64, B)
        levels = (ids.cpu() - self.level_ids()).clamp(0, LEVELS - 1)
        return levels.t().reshape(count, SIDE, SIDE)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "conditional": self.conditional}


class _DigitsStream(Stream):
    """Training batches of images drawn uniformly with replacement (the rng's state is the whole state)."""

    def __init__(self, task: DigitsTask, batch_size: int, seed: int):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.task = task
        self.batch_size = batch_size
        self.rng = random.Random(seed)

    def __next__(self) -> Batch:
        pixels, classes = self.task.data["train"]
        index = torch.tensor([self.rng.randrange(len(classes)) for _ in range(self.batch_size)])
        return self.task.batch(pixels[index], classes[index])

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        self.batch_size = state["batch_size"]

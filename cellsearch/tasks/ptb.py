"""Word-level Penn Treebank language modelling (Mikolov's preprocessing, 10k-word vocabulary).

The corpus is read from ``<data root>/ptb/`` (see ``cellsearch.tasks.data``; checksums are
verified first). Every line is split on whitespace and ends with ``<eos>``; the files already
map rare words to ``<unk>``. The vocabulary is the training set's 10,000 words: ``<eos>`` is
id 0, the other words follow by decreasing training frequency, ties alphabetically.

Training is truncated BPTT in the style of pytorch/examples ``word_language_model``: the
training tokens are cut into ``batch_size`` contiguous columns and read in chunks of ``bptt``
steps (the last chunk of an epoch may be shorter), each carrying the previous chunk's state
except the first chunk of every epoch. Evaluation reads a split the same way with the state
carried over the whole split; tokens that do not fill the last row of the batched split are
left out (fewer than ``batch_size``).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from cellsearch.errors import ConfigError
from cellsearch.limits import MAX_EVAL_TOKENS, MAX_SEQUENCE_LENGTH, check_number
from cellsearch.tasks.base import Batch, Stream, Task, Vocab
from cellsearch.tasks.data import DATASETS, verify
from cellsearch.tasks.streams import batchify, chunk, evaluate_stream

SPLITS = ("train", "valid", "test")
EOS = "<eos>"


def read_words(path: str | Path) -> list[str]:
    """The file's words, line by line, each line followed by ``<eos>``."""
    words: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words.extend(line.split())
            words.append(EOS)
    return words


class PTBStream(Stream):
    """Endless truncated-BPTT batches over the training tokens, epoch after epoch in the same order.

    ``state_dict`` holds the position (row of the batched data the next chunk starts at) and
    the epoch (0-based, the epoch the next batch belongs to once wrapped).
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, bptt: int, seed: int = 0):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.data = batchify(ids, batch_size)
        if self.data.shape[0] < 2:
            raise ConfigError(f"batch_size {batch_size} is too large for {ids.numel()} training tokens")
        self.batch_size = batch_size
        self.bptt = bptt
        self.seed = seed  # unused: the order of the training data is fixed
        self.num_tokens = ids.numel()
        self.position = 0
        self.epoch = 0

    @property
    def batches_per_epoch(self) -> int:
        """How many BPTT windows one pass over the token stream takes."""
        return math.ceil((self.data.shape[0] - 1) / self.bptt)

    def __next__(self) -> Batch:
        if self.position >= self.data.shape[0] - 1:
            self.position = 0
            self.epoch += 1
        i = self.position
        inputs, targets = chunk(self.data, i, self.bptt)
        self.position = i + inputs.shape[0]
        mask = torch.ones(inputs.shape, dtype=torch.bool)
        return Batch(inputs, targets, mask, carry_state=i != 0)

    def state_dict(self) -> dict[str, Any]:
        """The stream's position and the settings it was made with, for a checkpoint."""
        return {"position": self.position, "epoch": self.epoch, "batch_size": self.batch_size,
                "bptt": self.bptt, "num_tokens": self.num_tokens, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at the position ``state_dict`` saved; ConfigError if the stream's settings differ from
        the saved ones or the position lies outside the data."""
        for key in ("batch_size", "bptt", "num_tokens"):
            if key in state and state[key] != getattr(self, key):
                raise ConfigError(f"cannot resume the PTB stream: it was saved with {key}={state[key]}, "
                                  f"this one has {key}={getattr(self, key)}; use the same settings")
        position = int(state["position"])
        if not 0 <= position <= self.data.shape[0] - 1:
            raise ConfigError(f"cannot resume the PTB stream: position {position} is out of range")
        self.position = position
        self.epoch = int(state["epoch"])


class PTBTask(Task):
    """Penn Treebank word-level language modelling; the primary metric is the per-word
    probability ``word_prob`` = 1 / perplexity (higher is better).

    ``data_dir``: the data root (or the ptb folder itself); ``None`` uses ``$CELLSEARCH_DATA``
    or the user cache folder. ``bptt``: truncated-BPTT length for training and evaluation.
    ``eval_tokens``: evaluate on only the first N tokens of a split (quick budgets).
    """

    name = "ptb"
    primary_metric = "word_prob"

    vocab_bound = 10_001  # the training set's 10,000 words and <eos>

    def __init__(self, data_dir: str | Path | None = None, bptt: int = 35, eval_tokens: int | None = None):
        self.check_values({"bptt": bptt, "eval_tokens": eval_tokens})
        self.bptt = bptt
        self.eval_tokens = eval_tokens
        self.folder = verify("ptb", data_dir)
        files = {split: self.folder / f"ptb.{split}.txt" for split in SPLITS}
        assert set(p.name for p in files.values()) == set(DATASETS["ptb"].files)
        words = {split: read_words(path) for split, path in files.items()}
        counts = Counter(words["train"])
        counts.pop(EOS, None)
        ordered = sorted(counts, key=lambda w: (-counts[w], w))
        self.vocab = Vocab(ordered, specials=(EOS,))
        self._ids = {split: torch.tensor(self.vocab.encode(w), dtype=torch.long) for split, w in words.items()}

    @classmethod
    def check_values(cls, values: dict[str, Any]) -> None:
        check_number(cls.option("bptt"), values["bptt"], 1, "sequence length", MAX_SEQUENCE_LENGTH)
        if values["eval_tokens"] is not None:  # (None: the whole split)
            check_number(cls.option("eval_tokens"), values["eval_tokens"], 2, "evaluation tokens", MAX_EVAL_TOKENS)

    @classmethod
    def longest_sequence(cls, values: dict[str, Any]) -> int:
        return values["bptt"]

    def tokens(self, split: str) -> torch.Tensor:
        """The split's token ids as one (N,) long tensor (``<eos>`` included)."""
        if split not in self._ids:
            raise ConfigError(f"unknown PTB split '{split}'; choose one of {', '.join(SPLITS)}")
        return self._ids[split]

    def train_stream(self, batch_size: int, seed: int = 0) -> PTBStream:
        """Truncated-BPTT training batches. ``seed`` is unused: PTB is always read in the same order
        (the first batch of every epoch starts at the first token), as is standard."""
        return PTBStream(self._ids["train"], batch_size, self.bptt, seed)

    def evaluate(self, model, split: str = "valid", batch_size: int = 10,
                 max_tokens: int | None = None) -> dict[str, float]:
        """Perplexity, per-word probability and mean NLL (nats) on ``split``, state carried across
        chunks. ``max_tokens`` (default: the task's ``eval_tokens``) limits it to the first N tokens."""
        ids = self.tokens(split)
        limit = self.eval_tokens if max_tokens is None else max_tokens
        if limit is not None:
            ids = ids[:limit]
        metrics = evaluate_stream(model, ids, batch_size, self.bptt)
        loss = metrics["loss"]
        perplexity = math.exp(loss) if loss < 700 else math.inf
        return {"perplexity": perplexity, "word_prob": math.exp(-loss), "loss": loss}

    def config(self) -> dict[str, Any]:
        """The settings (the data location is left out: it differs between machines)."""
        return {"name": self.name, "bptt": self.bptt, "eval_tokens": self.eval_tokens}
